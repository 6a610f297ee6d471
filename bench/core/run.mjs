// Runs a wasm32-wasip1 command under node's WASI (V8): run.mjs MODULE INPUT_FILE. The input
// file's folder is visible to the module as /in; stdout and stderr are inherited.
// The core links the proxy-wasm glue too; its host functions are never called here, and
// would throw if they were.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv } from 'node:process';
import { basename, dirname } from 'node:path';

const wasi = new WASI({
  version: 'preview1',
  args: [argv[2], `/in/${basename(argv[3])}`],
  env: {},
  preopens: { '/in': dirname(argv[3]) },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(argv[2]));
const imports = wasi.getImportObject();
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.kind === 'function' && !(imports[imp.module] && imports[imp.module][imp.name])) {
    imports[imp.module] ??= {};
    imports[imp.module][imp.name] = () => { throw new Error(`host call ${imp.name} outside Envoy`); };
  }
}
const instance = await WebAssembly.instantiate(module, imports);
// The filter's proxy_wasm::main! exports a reactor's _initialize beside the command's _start;
// WASI runs a command only, so it is shown _start and the memory alone.
const { _start, memory } = instance.exports;
process.exitCode = wasi.start({ exports: { _start, memory } });
