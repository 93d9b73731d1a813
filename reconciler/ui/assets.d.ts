// The dashboard's assets are imported as text (`with { type: "text" }`) so that
// `bun build --compile` embeds them in the binary (api/dashboard.ts serves them): its own, and
// the chart library's (uPlot, MIT) from its npm package, with its licence.
declare module "*/ui/app.js" {
  const text: string;
  export default text;
}
declare module "*/ui/app.css" {
  const text: string;
  export default text;
}
declare module "*/ui/goodput.js" {
  const text: string;
  export default text;
}
declare module "uplot/dist/uPlot.iife.min.js" {
  const text: string;
  export default text;
}
declare module "uplot/dist/uPlot.min.css" {
  const text: string;
  export default text;
}
declare module "uplot/LICENSE" {
  const text: string;
  export default text;
}
