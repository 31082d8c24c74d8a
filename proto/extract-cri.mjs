// Takes the CRI API that the installed containerd serves out of its binary:
// Go's protobuf registry keeps every registered .proto file there as a
// gzipped FileDescriptorProto. Debian packages neither the CRI .proto nor
// crictl, and this keeps our CRI client in step with the containerd we run.
// Writes runtime.v1's api.proto as protobufjs JSON (maps as maps, which a
// client loading the raw descriptor would see as lists of entries).
//   usage: node proto/extract-cri.mjs CONTAINERD_BINARY OUT_FILE
import { Buffer } from 'node:buffer';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { inflateRawSync } from 'node:zlib';

const require = createRequire(import.meta.url);
const protobuf = require('protobufjs');
const { FileDescriptorProto } = require('protobufjs/ext/descriptor');

const [binaryPath, outFile] = process.argv.slice(2);
if (!binaryPath || !outFile) {
  console.error('usage: node proto/extract-cri.mjs CONTAINERD_BINARY OUT_FILE');
  process.exit(2);
}
const WANTED = { name: 'api.proto', package: 'runtime.v1' };
// A gzip member as Go writes it: deflate, no flags, no time; the deflate data follows a 10-byte header.
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00]);
const GZIP_HEADER_BYTES = 10;
// Far more than any one descriptor: raw inflate stops at the end of its stream.
const MAX_COMPRESSED = 1 << 20;

const binary = readFileSync(binaryPath);
const found = [];
for (let at = binary.indexOf(GZIP_HEADER); at >= 0; at = binary.indexOf(GZIP_HEADER, at + 1)) {
  let file;
  try {
    const start = at + GZIP_HEADER_BYTES;
    file = FileDescriptorProto.decode(inflateRawSync(binary.subarray(start, start + MAX_COMPRESSED)));
  } catch {
    continue; // not a descriptor
  }
  if (file.name === WANTED.name && file.package === WANTED.package) found.push(file);
}
if (found.length !== 1) {
  console.error(`${binaryPath}: expected one ${WANTED.package} ${WANTED.name} descriptor, found ${found.length}`);
  process.exit(1);
}
const [file] = found;
const services = file.service.map((s) => `${s.name} (${s.method.length} methods)`).join(', ');
// Its one import, gogo.proto, only adds Go options: the file stands alone.
const root = protobuf.Root.fromDescriptor({ file: [file] });
writeFileSync(outFile, `${JSON.stringify(root.toJSON(), null, 1)}\n`);
console.error(`cri: ${outFile}: ${WANTED.package} from ${binaryPath}: ${services}`);
