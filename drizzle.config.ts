import { defineConfig } from "drizzle-kit";

// Generates SQL migrations from schema/db.ts; scripts/db-generate.ts then
// writes the index that embeds them in the binary.
export default defineConfig({
  dialect: "sqlite",
  schema: "./schema/db.ts",
  out: "./reconciler/store/migrations",
});
