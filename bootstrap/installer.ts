// The agent installer the reconciler serves at /install.sh: bootstrap/install.sh with the
// reconciler's URL, the agent binary's sha256, the public key of the signed release it serves
// (if any) and the systemd unit (systemd/navarch-node.service) filled in. Both files are
// embedded in the compiled binary.
import INSTALL_SH from "./install.sh" with { type: "text" };
import NODE_UNIT from "../systemd/navarch-node.service" with { type: "text" };

export { NODE_UNIT };

export interface InstallerValues {
  /** The URL the machine reaches the reconciler at (baked in as the default --server). */
  serverUrl: string;
  /** sha256 (hex) of the agent binary it will download; empty: not checked. */
  agentSha256: string;
  /** The minisign public key (base64) the served release is signed with; empty: the reconciler serves no signed release. */
  releasePublicKey?: string;
  /** Set when there is no agent to download: the script then stops with this message. */
  problem?: string;
}

/** install.sh, ready to pipe into sh. */
export function renderInstaller(values: InstallerValues): string {
  const quoted = (s: string) => {
    // Goes between single quotes in the script.
    if (s.includes("'") || s.includes("\n")) throw new Error(`installer value ${JSON.stringify(s)} cannot contain a quote or a newline`);
    return s;
  };
  if (NODE_UNIT.includes("\nNAVARCH_UNIT\n")) throw new Error("the unit text contains the installer's heredoc delimiter");
  // Replacer functions: a `$` in a value is never a replacement pattern.
  const unit = NODE_UNIT.endsWith("\n") ? NODE_UNIT : `${NODE_UNIT}\n`;
  return INSTALL_SH.replace("@@NAVARCH_SERVER@@", () => quoted(values.serverUrl))
    .replace("@@AGENT_SHA256@@", () => quoted(values.agentSha256))
    .replace("@@RELEASE_PUBLIC_KEY@@", () => quoted(values.releasePublicKey ?? ""))
    .replace("@@AGENT_PROBLEM@@", () => quoted(values.problem ?? ""))
    .replace("@@NODE_UNIT@@\n", () => unit);
}
