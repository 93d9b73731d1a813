// Loaded before every test file (bunfig.toml): removes the temp directories the tests made.
// bun test does not run process "exit" handlers, so this is the only reliable moment.
import { afterAll } from "bun:test";
import { removeTempDirs } from "./support.ts";

afterAll(removeTempDirs);
