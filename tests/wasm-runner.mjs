// Cargo's runner for wasm32-wasip1 test binaries (`make test-wasm`): runs them inside V8, as
// Envoy would run the filter, with the host's file system visible at the same paths (the
// Wycheproof vectors in ../shared). The filter's proxy_wasm::main! exports a reactor's
// _initialize beside the command's _start, so WASI is shown _start and the memory only; the
// proxy-wasm host functions are never called by tests, and throw if they are.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv, env, exit } from 'node:process';

const [, , file, ...args] = argv;
const wasi = new WASI({
  version: 'preview1',
  args: [file, ...args],
  env: { ...env },
  preopens: { '/': '/' },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(file));
const imports = wasi.getImportObject();
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.kind === 'function' && !(imports[imp.module] && imports[imp.module][imp.name])) {
    imports[imp.module] ??= {};
    imports[imp.module][imp.name] = () => { throw new Error(`host call ${imp.name} outside Envoy`); };
  }
}
const instance = await WebAssembly.instantiate(module, imports);
const { _start, memory } = instance.exports;
exit(wasi.start({ exports: { _start, memory } }));
