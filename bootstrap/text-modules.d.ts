// Bun imports these as strings with `with { type: "text" }` (embedded in compiled binaries).
declare module "*.sh" {
  const text: string;
  export default text;
}
declare module "*.service" {
  const text: string;
  export default text;
}
