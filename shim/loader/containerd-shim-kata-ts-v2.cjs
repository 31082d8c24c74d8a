// Runs the bundled shim (shim.cjs beside this file) with a V8 code cache.
// Every `ctr run` of a new sandbox waits for a shim to start, and compiling
// the shim's JavaScript is a large share of that start. The first shim to run
// a given bundle writes the cache when it exits, holding every function it
// compiled (the shim calls the hook below as it exits after serving; a
// `delete` or a pod member's `start` compiles too little to be worth keeping);
// later shims skip those compiles. V8 accepts a cache only from the
// same Node build with the same flags, and the cache's name also carries the
// bundle's identity, so a rebuilt bundle never runs with stale code.
//   node containerd-shim-kata-ts-v2.cjs [shim flags] start|delete
// KATA_TS_CACHE moves the cache root (default /var/cache/kata-ts), as it does
// for the kernel and crun builds.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

const bundle = path.join(__dirname, 'shim.cjs');
const cacheDir = path.join(process.env.KATA_TS_CACHE || '/var/cache/kata-ts', 'shim-code-cache');

/** Names the cache after what V8 does not fully check itself: which bundle file, and its exact build. */
function cacheName() {
  const st = fs.statSync(bundle, { bigint: true });
  const flags = process.execArgv.join(' ').replace(/[^\w.=-]+/g, '_');
  return `${process.version}-${process.arch}-${st.ino}-${st.size}-${st.mtimeNs}-${flags}.v8cache`;
}

function readCache(file) {
  try {
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}

/** Best effort: without a writable cache folder the shim only starts slower. */
function writeCache(file, script) {
  try {
    fs.mkdirSync(cacheDir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, script.createCachedData());
    fs.renameSync(tmp, file);
    // Caches of earlier bundles or Node builds are never read again.
    for (const name of fs.readdirSync(cacheDir)) {
      if (name !== path.basename(file) && name.endsWith('.v8cache')) fs.rmSync(path.join(cacheDir, name), { force: true });
    }
  } catch {
    // read-only or full: nothing to clean up beyond a stray temporary file
  }
}

const cacheFile = path.join(cacheDir, cacheName());
const cachedData = readCache(cacheFile);
const script = new vm.Script(Module.wrap(fs.readFileSync(bundle, 'utf8')), { filename: bundle, cachedData });
if (!cachedData || script.cachedDataRejected) globalThis.__kataTsSaveCodeCache = () => writeCache(cacheFile, script);
const mod = new Module(bundle, module);
mod.filename = bundle;
mod.paths = Module._nodeModulePaths(__dirname);
script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(bundle), mod, bundle, __dirname);
