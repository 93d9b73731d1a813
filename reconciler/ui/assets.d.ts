// The dashboard's assets are imported as text (`with { type: "text" }`) so that
// `bun build --compile` embeds them in the binary (api/dashboard.ts serves them).
declare module "*/ui/app.js" {
  const text: string;
  export default text;
}
declare module "*/ui/app.css" {
  const text: string;
  export default text;
}
