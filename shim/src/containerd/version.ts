// The version the shim reports (Connect, -v).
export const SHIM_VERSION = 'kata-ts 0.1.0';
