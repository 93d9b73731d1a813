// Kubernetes label keys and values, as the API server takes them: pools' labels and taints are
// mirrored onto their Kubernetes Nodes, and the kubernetes: section names a label and a taint key.
import * as v from "valibot";
import { accept, show, withJsonShape } from "../shapes.ts";
import { Mapping } from "./leaf-schemas.ts";

const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const LabelKey = accept<string>(
  (x) => {
    if (typeof x !== "string") return false;
    const slash = x.lastIndexOf("/");
    const [prefix, name] = slash < 0 ? [undefined, x] : [x.slice(0, slash), x.slice(slash + 1)];
    return LABEL_NAME.test(name) && (prefix === undefined || DNS_SUBDOMAIN.test(prefix));
  },
  "a Kubernetes label key ([prefix/]name: name at most 63 letters, digits, '-', '_', '.', alphanumeric at both ends)",
  { type: "string", minLength: 1, maxLength: 317 },
);
export const LabelValue = withJsonShape(
  v.custom<string>(
    (x) => typeof x === "string" && (x === "" || LABEL_NAME.test(x)),
    (issue) =>
      typeof issue.input === "string"
        ? `expected a Kubernetes label value (at most 63 letters, digits, '-', '_', '.', alphanumeric at both ends), got ${show(issue.input)}`
        : `expected a string (quote it: "${String(issue.input)}"), got ${show(issue.input)}`,
  ),
  { type: "string", maxLength: 63 },
);
export const Labels = v.pipe(Mapping, v.record(LabelKey, LabelValue));
