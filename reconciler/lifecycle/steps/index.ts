// One step per state: what the loop does with a node in that state. Each returns when
// it next needs a look (context.ts). States not listed here wait for something outside
// the loop: held for a human, terminated and failed for nothing.
import type { NodeState } from "../../../schema/lifecycle.ts";
import type { Step } from "../context.ts";
import { cordoned } from "./cordoned.ts";
import { drain } from "./drain.ts";
import { inService } from "./in-service.ts";
import { launch } from "./launch.ts";
import { lost } from "./lost.ts";
import { provision } from "./provision.ts";
import { reboot } from "./reboot.ts";
import { terminate } from "./terminate.ts";
import { validate } from "./validate.ts";

const waitForHuman: Step = async () => undefined;

export const STEPS: Readonly<Record<NodeState, Step>> = {
  requested: launch,
  provisioning: provision,
  bootstrapping: provision,
  validating: validate,
  ready: inService,
  suspect: inService,
  cordoned,
  draining: drain,
  rebooting: reboot,
  held: waitForHuman,
  lost,
  terminating: terminate,
  terminated: waitForHuman,
  failed: waitForHuman,
};
