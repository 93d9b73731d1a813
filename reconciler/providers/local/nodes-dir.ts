// The on-disk layout of the local provider's nodes_dir (providers.local.nodes_dir): one
// directory per instance, named after it, holding its record (instance.json), the agent's pid
// file, the fake GPUs' state and control FIFO, its kernel log, its spool and its log. This is
// the one place that knows the layout.
//
// A launch builds the directory under a staging name and renames it into place: the rename
// is the atomic claim of the name. A terminated instance's directory stays as a tombstone
// until the provider reaps it.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { errnoOf, errorText } from "./errors.ts";
import { InstanceRecord, type LocalInstanceRecord } from "./instance-record.ts";

/** Instance names double as directory names and node ids: 1–63 of [A-Za-z0-9._-], alphanumeric at both ends. */
const NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
const STAGING_PREFIX = ".staging-";

/** The files of one instance directory. */
export interface LocalNodeFiles {
  dir: string;
  /** instance.json: the record (LocalInstanceRecord), replaced atomically. */
  record: string;
  /** agent.pid: written by the spawning shell before it execs the agent. */
  pidFile: string;
  /** The fake libnvidia-ml's state file (FAKE_NVML_STATE). */
  nvmlState: string;
  /** The fake libnvidia-ml's control FIFO (FAKE_NVML_CONTROL; the library creates it). */
  nvmlControl: string;
  /** Kernel log in /dev/kmsg record format (--kmsg-path). */
  kmsg: string;
  /** The agent's --state-dir (its spool). */
  stateDir: string;
  /** stdout + stderr of the agent. */
  agentLog: string;
}

/** The one place that knows the layout of nodes_dir. */
export class LocalNodesDir {
  constructor(readonly root: string) {}

  static validName(name: string): boolean {
    return NAME.test(name);
  }

  /** The files of the instance `name` (its directory need not exist). */
  files(name: string): LocalNodeFiles {
    return LocalNodesDir.filesIn(join(this.root, name));
  }

  static filesIn(dir: string): LocalNodeFiles {
    return {
      dir,
      record: join(dir, "instance.json"),
      pidFile: join(dir, "agent.pid"),
      nvmlState: join(dir, "nvml-state"),
      nvmlControl: join(dir, "nvml-control"),
      kmsg: join(dir, "kmsg"),
      stateDir: join(dir, "agent-state"),
      agentLog: join(dir, "agent.log"),
    };
  }
  /** Names of every instance directory (staging directories excluded). */
  names(): string[] {
    let entries;
    try {
      entries = readdirSync(this.root, { withFileTypes: true });
    } catch (err) {
      if (errnoOf(err) === "ENOENT") return [];
      throw err;
    }
    return entries
      .filter((e) => e.isDirectory() && LocalNodesDir.validName(e.name))
      .map((e) => e.name)
      .sort();
  }

  /** A fresh staging directory; renamed into place by claim(). */
  stage(name: string): LocalNodeFiles {
    mkdirSync(this.root, { recursive: true });
    return LocalNodesDir.filesIn(mkdtempSync(join(this.root, `${STAGING_PREFIX}${name}-`)));
  }

  /** Moves a staging directory into place; false when the name is already taken. */
  claim(staged: LocalNodeFiles, name: string): boolean {
    try {
      renameSync(staged.dir, join(this.root, name));
      return true;
    } catch (err) {
      const code = errnoOf(err);
      if (code === "ENOTEMPTY" || code === "EEXIST") {
        rmSync(staged.dir, { recursive: true, force: true });
        return false;
      }
      throw err;
    }
  }

  /** Staging directories left by a crash, older than the cutoff (ms since the epoch). */
  staleStaging(cutoffMs: number): string[] {
    let entries: string[];
    try {
      entries = readdirSync(this.root);
    } catch {
      return [];
    }
    return entries
      .filter((e) => e.startsWith(STAGING_PREFIX))
      .map((e) => join(this.root, e))
      .filter((p) => {
        try {
          return statSync(p).mtimeMs < cutoffMs;
        } catch {
          return false;
        }
      });
  }

  /** The record, or undefined when missing or unreadable (the reason goes to `log`). */
  read(name: string, log: (line: string) => void): LocalInstanceRecord | undefined {
    const path = this.files(name).record;
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      if (errnoOf(err) !== "ENOENT") log(`local: cannot read ${path}: ${errorText(err)}`);
      return undefined;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      log(`local: ${path} is not JSON: ${errorText(err)}`);
      return undefined;
    }
    const parsed = v.safeParse(InstanceRecord, json);
    if (!parsed.success) {
      log(`local: ${path}: ${parsed.issues.map((i) => `${v.getDotPath(i) ?? "(root)"}: ${i.message}`).join("; ")}`);
      return undefined;
    }
    return parsed.output;
  }

  /** Writes the record atomically (temp file + rename) into `files.dir`. */
  static write(files: LocalNodeFiles, record: LocalInstanceRecord): void {
    const tmp = `${files.record}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`);
    renameSync(tmp, files.record);
  }

  /** The pid the spawning shell wrote, if any. */
  readPidFile(name: string): number | undefined {
    try {
      const n = Number(readFileSync(this.files(name).pidFile, "utf8").trim());
      return Number.isInteger(n) && n > 0 ? n : undefined;
    } catch {
      return undefined;
    }
  }

  remove(name: string): void {
    rmSync(join(this.root, name), { recursive: true, force: true });
  }
}
