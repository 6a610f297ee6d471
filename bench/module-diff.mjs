// Two builds of the filter's module side by side in V8 (node), through the same proxy-wasm
// calls: configured with every example and with broken documents, then a few requests. Every
// host call either module makes (logs, local responses, header changes, metrics) is recorded;
// the two records must be equal. Used by `make size` for cargo's module against the one
// wasm-opt shrank (issue 23): a shrinking that changes what the filter does shows here.
//
//     node bench/module-diff.mjs A.wasm B.wasm examples/*.json
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';
import { argv, exit } from 'node:process';

const [, , fileA, fileB, ...configs] = argv;
const enc = new TextEncoder();
const dec = new TextDecoder();

async function load(file) {
  const module = await WebAssembly.compile(readFileSync(file));
  const wasi = new WASI({ version: 'preview1', args: [], env: { DEMO_WEBHOOK_SECRET: 'whsec_demo' }, returnOnExit: true });
  let inst;
  const log = [];
  let headers = [];
  let metric = 0;
  const mem = () => new DataView(inst.exports.memory.buffer);
  const bytes = (p, n) => new Uint8Array(inst.exports.memory.buffer, p, n).slice();
  const str = (p, n) => dec.decode(bytes(p, n));
  const give = (data, retPtr, retSize) => {
    const p = inst.exports.proxy_on_memory_allocate(data.length);
    new Uint8Array(inst.exports.memory.buffer, p, data.length).set(data);
    mem().setUint32(retPtr, p, true);
    mem().setUint32(retSize, data.length, true);
    return 0;
  };
  const pairs = (list) => {
    const parts = [];
    let size = 4 + list.length * 8;
    for (const [n, v] of list) size += enc.encode(n).length + enc.encode(v).length + 2;
    const out = new Uint8Array(size);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, list.length, true);
    let o = 4 + list.length * 8;
    list.forEach(([n, v], i) => {
      const nb = enc.encode(n), vb = enc.encode(v);
      dv.setUint32(4 + i * 8, nb.length, true);
      dv.setUint32(8 + i * 8, vb.length, true);
      out.set(nb, o); o += nb.length + 1;
      out.set(vb, o); o += vb.length + 1;
    });
    return out;
  };
  let config = new Uint8Array();
  const env = {
    proxy_log: (level, p, n) => { log.push(['log', level, str(p, n)]); return 0; },
    proxy_get_log_level: (r) => { mem().setUint32(r, 0, true); return 0; },
    proxy_get_current_time_nanoseconds: (r) => { mem().setBigUint64(r, 1_750_000_000_000_000_000n, true); return 0; },
    proxy_set_tick_period_milliseconds: (ms) => { log.push(['tick', ms]); return 0; },
    proxy_get_buffer_bytes: (t, start, max, rp, rs) => (t === 7 || t === 6 ? give(config.slice(start, start + max), rp, rs) : 1),
    proxy_set_buffer_bytes: (t, s, n, p, m) => { log.push(['set_buffer', t, s, n, str(p, m)]); return 0; },
    proxy_get_header_map_pairs: (t, rp, rs) => give(pairs(t === 0 ? headers : []), rp, rs),
    proxy_get_header_map_value: (t, kp, kn, rp, rs) => {
      const k = str(kp, kn);
      const hit = t === 0 && headers.find(([n]) => n === k);
      return hit ? give(enc.encode(hit[1]), rp, rs) : 1;
    },
    proxy_replace_header_map_value: (t, kp, kn, vp, vn) => { log.push(['replace', t, str(kp, kn), str(vp, vn)]); return 0; },
    proxy_remove_header_map_value: (t, kp, kn) => { log.push(['remove', t, str(kp, kn)]); return 0; },
    proxy_get_shared_data: () => 1,
    proxy_set_shared_data: (kp, kn) => { log.push(['set_shared', str(kp, kn)]); return 0; },
    proxy_send_local_response: (status, dp, dn, bp, bn, hp, hn, grpc) => {
      log.push(['local_response', status, str(dp, dn), str(bp, bn), str(hp, hn), grpc]);
      return 0;
    },
    proxy_continue_stream: (t) => { log.push(['continue', t]); return 0; },
    proxy_http_call: () => { log.push(['http_call']); return 1; },
    proxy_set_property: (pp, pn, vp, vn) => { log.push(['set_property', str(pp, pn), str(vp, vn)]); return 0; },
    proxy_get_property: () => 1,
    proxy_close_stream: (t) => { log.push(['close', t]); return 0; },
    proxy_set_effective_context: () => 0,
    proxy_define_metric: (t, p, n, r) => { mem().setUint32(r, ++metric, true); log.push(['metric', t, str(p, n)]); return 0; },
    proxy_increment_metric: (id, by) => { log.push(['increment', id, Number(by)]); return 0; },
    proxy_call_foreign_function: () => 1,
  };
  const imports = { env, ...wasi.getImportObject() };
  inst = await WebAssembly.instantiate(module, imports);
  wasi.initialize(inst);
  return {
    log,
    configure(doc) {
      config = enc.encode(doc);
      inst.exports.proxy_on_context_create(1, 0);
      log.push(['vm_start', inst.exports.proxy_on_vm_start(1, 0)]);
      log.push(['configure', inst.exports.proxy_on_configure(1, config.length)]);
    },
    request(id, list) {
      headers = list;
      inst.exports.proxy_on_context_create(id, 1);
      log.push(['request_headers', inst.exports.proxy_on_request_headers(id, list.length, 1)]);
      log.push(['response_headers', inst.exports.proxy_on_response_headers(id, 0, 1)]);
      inst.exports.proxy_on_delete(id);
    },
  };
}

const broken = [
  '{"rotues": []}',
  '{"routes": [{"match": {"prefix": "/"}, "auth": {"scopes": [1]}}]}',
  '{"token_cache": {"max_entries": -1}}',
  '{"api_keys": {"prefixes": ["cm_"], "keys": [{"id": "a", "sha256": "x", "status": "paused"}]}}',
  '{"unmatched": {"deny": null, "allow": null}}',
  '{"api_keys": {"prefixes": ["cm_secret"',
  '"just a string"',
];
const requests = [
  [[':method', 'GET'], [':path', '/'], [':authority', 'example.com']],
  [[':method', 'POST'], [':path', '/v1/messages'], [':authority', 'api.example.com'], ['x-api-key', 'cm_example_all_services']],
  [[':method', 'GET'], [':path', '/api/v1/me'], ['authorization', 'Bearer not.a.token']],
  [[':method', 'GET'], [':path', '/health'], ['x-api-key', 'cf_ak_example_full_access']],
];

let differ = 0;
let calls = 0;
for (const doc of [...configs.map((f) => readFileSync(f, 'utf8')), ...broken]) {
  const [a, b] = [await load(fileA), await load(fileB)];
  for (const m of [a, b]) {
    m.configure(doc);
    requests.forEach((r, i) => m.request(10 + i, r));
  }
  calls += a.log.length;
  const [ja, jb] = [JSON.stringify(a.log), JSON.stringify(b.log)];
  if (ja !== jb) {
    differ++;
    console.log(`differ on ${doc.slice(0, 80)}:\n  ${ja.slice(0, 2000)}\n  ${jb.slice(0, 2000)}`);
  }
}
console.log(`${configs.length + broken.length} configurations, ${calls} host calls each: ${differ ? `${differ} differ` : 'the same'}`);
exit(differ ? 1 : 0);
