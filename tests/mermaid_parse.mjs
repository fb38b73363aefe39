// Parse each Mermaid file named on the command line with the real Mermaid library
// (npm package `mermaid`, loaded from tests/.mermaid/node_modules; jsdom stands in for the
// browser's DOM, which its sanitiser needs). Prints `FILE ok TYPE` or `FILE ERROR message`;
// exits 1 when any file fails to parse.
import fs from "fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });
let failed = 0;
for (const file of process.argv.slice(2)) {
  try {
    const result = await mermaid.parse(fs.readFileSync(file, "utf8"));
    console.log(`${file} ok ${result.diagramType}`);
  } catch (error) {
    failed = 1;
    console.log(`${file} ERROR ${String(error.message || error).split("\n").join(" ")}`);
  }
}
process.exit(failed);
