// The version both programs report (agent registration, `--version`, /metrics).
import pkg from "../package.json" with { type: "json" };

export const NAVARCH_VERSION: string = pkg.version;
