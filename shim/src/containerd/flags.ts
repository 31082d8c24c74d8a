// The command line containerd gives a shim, parsed the way Go's flag package
// does: single-dash flags, `-name value` or `-name=value`, booleans bare,
// parsing stops at the first positional argument (the action).

export interface ShimFlags {
  namespace: string;
  address: string;
  publishBinary: string;
  id: string;
  bundle: string;
  debug: boolean;
  version: boolean;
  /** Empty only with -v. */
  action: 'start' | 'delete' | '';
}

const STRING_FLAGS: Record<string, keyof ShimFlags> = {
  namespace: 'namespace',
  address: 'address',
  'publish-binary': 'publishBinary',
  id: 'id',
  bundle: 'bundle',
};
const BOOL_FLAGS: Record<string, 'debug' | 'version'> = { debug: 'debug', v: 'version' };

export class FlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlagError';
  }
}

export function parseFlags(argv: string[]): ShimFlags {
  const flags: ShimFlags = { namespace: '', address: '', publishBinary: '', id: '', bundle: '', debug: false, version: false, action: '' };
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('-') || arg === '-') break;
    if (arg === '--') {
      i++;
      break;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    if (name in BOOL_FLAGS) {
      const value = eq >= 0 ? body.slice(eq + 1) : 'true';
      flags[BOOL_FLAGS[name]!] = value === 'true' || value === '1';
      continue;
    }
    const key = STRING_FLAGS[name];
    if (!key) throw new FlagError(`flag provided but not defined: -${name}`);
    const value = eq >= 0 ? body.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new FlagError(`flag needs an argument: -${name}`);
    (flags as unknown as Record<string, string>)[key] = value;
  }
  const action = argv[i];
  if (action === undefined) {
    if (!flags.version) throw new FlagError('missing action: start or delete');
  } else {
    if (action !== 'start' && action !== 'delete') throw new FlagError(`unknown action ${JSON.stringify(action)}`);
    flags.action = action;
  }
  return flags;
}
