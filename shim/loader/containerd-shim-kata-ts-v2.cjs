// Runs the bundled shim (shim.cjs beside this file) with a V8 code cache.
// Every `ctr run` of a new sandbox waits for a shim to start, and compiling
// the shim's JavaScript is a large share of that start. The first shim to
// serve a sandbox with a given bundle writes the cache beside it as it exits
// (the shim calls the hook below; a `delete` or a pod member's `start`
// compiles too little to be worth keeping), holding every function it
// compiled; later shims skip those compiles. V8 accepts a cache only from the
// same Node build with the same flags, and the cache's name also carries the
// bundle's identity, so a rebuilt bundle never runs with stale code.
//   node containerd-shim-kata-ts-v2.cjs [shim flags] start|delete
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

const bundle = path.join(__dirname, 'shim.cjs');
const CACHE_PREFIX = 'shim.cjs.';
const CACHE_SUFFIX = '.v8cache';

/** Names the cache after what V8 does not fully check itself: the bundle's exact build. */
function cacheName() {
  const st = fs.statSync(bundle, { bigint: true });
  const flags = process.execArgv.join(' ').replace(/[^\w.=-]+/g, '_');
  return `${CACHE_PREFIX}${process.version}-${process.arch}-${st.ino}-${st.size}-${st.mtimeNs}-${flags}${CACHE_SUFFIX}`;
}

function readCache(file) {
  try {
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}

/** Best effort: where the bundle's folder cannot be written, the shim only starts slower. */
function writeCache(file, script) {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, script.createCachedData());
    fs.renameSync(tmp, file);
    // Caches of earlier builds of the bundle, or for another Node, are never read again.
    for (const name of fs.readdirSync(__dirname)) {
      if (name !== path.basename(file) && name.startsWith(CACHE_PREFIX) && name.endsWith(CACHE_SUFFIX)) fs.rmSync(path.join(__dirname, name), { force: true });
    }
  } catch {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // nothing more to do
    }
  }
}

const cacheFile = path.join(__dirname, cacheName());
const cachedData = readCache(cacheFile);
const script = new vm.Script(Module.wrap(fs.readFileSync(bundle, 'utf8')), { filename: bundle, cachedData });
if (!cachedData || script.cachedDataRejected) globalThis.__kataTsSaveCodeCache = () => writeCache(cacheFile, script);
const mod = new Module(bundle, module);
mod.filename = bundle;
mod.paths = Module._nodeModulePaths(__dirname);
script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(bundle), mod, bundle, __dirname);
