// Starts the bundled agent with a V8 code cache made at image build time.
// Under TCG, compiling the bundle's JavaScript is a large share of the
// agent's start-up; with the cache V8 skips it. A cache V8 rejects (another
// Node build) only costs the compile it would have done anyway.
//   node agent-loader.cjs [args]                        run the agent
//   KATA_TS_MAKE_CODE_CACHE=1 node agent-loader.cjs     write agent.cjs.cache
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

const bundle = path.join(__dirname, 'agent.cjs');
const cacheFile = bundle + '.cache';
const making = process.env.KATA_TS_MAKE_CODE_CACHE === '1';
const source = fs.readFileSync(bundle, 'utf8');
let cachedData;
if (!making) {
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
}
// The same filename when the cache is made and used: V8 keeps the one it was made with.
const script = new vm.Script(Module.wrap(source), { filename: '/usr/lib/kata-ts/agent.cjs', cachedData });
if (cachedData && script.cachedDataRejected) process.stderr.write('kata-ts agent: code cache rejected; compiling\n');
const mod = new Module(bundle, module);
mod.filename = bundle;
const factory = script.runInThisContext();
// In making mode the bundle runs a warm-up instead of the agent (agent/src/warm-up.ts); the
// cache made after it also holds the functions that the warm-up compiled.
factory.call(mod.exports, mod.exports, Module.createRequire(bundle), mod, bundle, path.dirname(bundle));
if (making) {
  globalThis.__kataTsStarted.then(() => {
    fs.writeFileSync(cacheFile, script.createCachedData());
    process.exit(0);
  });
}
