// CLI: write-pfn-info IMAGE — see nvdimm-pfn.ts.
import { writePfnInfo } from './nvdimm-pfn.js';

const image = process.argv[2];
if (!image) {
  console.error('usage: write-pfn-info IMAGE');
  process.exit(2);
}
writePfnInfo(image);
