// The release's provenance: an in-toto Statement (v1) whose predicate is SLSA Provenance v1,
// saying which files were built (their SHA-256), from which commit, by which command, with which
// Bun and lockfile. It is unsigned on its own; SHA256SUMS lists it, so the release's one
// signature covers it.

export interface ProvenanceInput {
  subjects: { name: string; sha256: string }[];
  /** `git rev-parse HEAD` */
  commit: string;
  /** Where the commit came from (`git remote get-url origin`), when the checkout has one. */
  repository?: string;
  /** Files changed in the work tree but not committed: a release of such a tree is not the commit alone. */
  uncommitted: string[];
  /** The command as typed (`npm run release`), and the arguments the tool got. */
  command: string;
  argv: string[];
  bunVersion: string;
  bunRevision: string;
  lockSha256: string;
  startedOn: Date;
  finishedOn: Date;
}

/** The build type this document describes: this repository's own release tool. */
export const BUILD_TYPE = "urn:navarch:release:scripts/release.ts:v1";

export function provenance(input: ProvenanceInput): Record<string, unknown> {
  return {
    _type: "https://in-toto.io/Statement/v1",
    subject: input.subjects.map((s) => ({ name: s.name, digest: { sha256: s.sha256 } })),
    predicateType: "https://slsa.dev/provenance/v1",
    predicate: {
      buildDefinition: {
        buildType: BUILD_TYPE,
        externalParameters: {
          command: input.command,
          argv: input.argv,
          source: { commit: input.commit, uncommittedChanges: input.uncommitted },
        },
        internalParameters: { platform: `${process.platform}-${process.arch}` },
        resolvedDependencies: [
          { uri: input.repository === undefined ? "git" : `git+${input.repository}`, digest: { gitCommit: input.commit } },
          { name: "bun.lock", digest: { sha256: input.lockSha256 } },
          { uri: `pkg:generic/bun@${input.bunVersion}`, digest: { gitCommit: input.bunRevision } },
        ],
      },
      runDetails: {
        builder: { id: BUILD_TYPE },
        metadata: { startedOn: input.startedOn.toISOString(), finishedOn: input.finishedOn.toISOString() },
      },
    },
  };
}
