// ttrpc for the shim: containerd's unary RPC protocol over unix sockets.
// Wire-only: nothing here knows about tasks, sandboxes or QEMU.
export { TtrpcClient, type CallOptions, type TtrpcClientOptions } from './client.js';
export type { Metadata, MetadataInit } from './envelope.js';
export { DEFAULT_MAX_MESSAGE_BYTES, encodeFrame, FrameDecoder, FrameTooLargeError, FrameType, type Frame } from './frame.js';
export { method, type CallContext, type Handler, type MessageDecoder, type MessageEncoder, type ServiceMethods, type UnaryMethod } from './method.js';
export { TtrpcServer, type CloseOptions, type TtrpcServerOptions } from './server.js';
export { Code, codeName, statusFromError, TtrpcError, type WireStatus } from './status.js';
