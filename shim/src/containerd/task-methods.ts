// Binds the Task service to ttrpc: one line per rpc of containerd.task.v2.Task.
import { containerd, google } from '../../../proto/gen/containerd/containerd.js';
import { method as ttrpcMethod, type CallContext, type MessageDecoder, type MessageEncoder, type ServiceMethods } from '../ttrpc/method.js';
import type { TaskService } from './task-service.js';
import { toTtrpcError } from './wire-errors.js';

import v2 = containerd.task.v2;

export const TASK_SERVICE = 'containerd.task.v2.Task';
const Empty = google.protobuf.Empty;

/** A Task rpc whose failures reach containerd as the gRPC codes it acts on (NotFound, FailedPrecondition, …). */
function method<Req, Res>(request: MessageDecoder<Req>, response: MessageEncoder<Res>, handler: (req: Req, ctx: CallContext) => Promise<Res>) {
  return ttrpcMethod(request, response, (req: Req, ctx) =>
    handler(req, ctx).catch((err: unknown) => {
      throw toTtrpcError(err);
    }),
  );
}

export function taskMethods(s: TaskService): ServiceMethods {
  return {
    State: method(v2.StateRequest, v2.StateResponse, (r) => s.state(r)),
    // containerd's deadline (kubelet's, for a pod) ends a boot it no longer waits for.
    Create: method(v2.CreateTaskRequest, v2.CreateTaskResponse, (r, ctx) => s.create(r, ctx.signal)),
    Start: method(v2.StartRequest, v2.StartResponse, (r) => s.start(r)),
    Delete: method(v2.DeleteRequest, v2.DeleteResponse, (r) => s.delete(r)),
    Pids: method(v2.PidsRequest, v2.PidsResponse, (r) => s.pids(r)),
    Pause: method(v2.PauseRequest, Empty, (r) => s.pause(r)),
    Resume: method(v2.ResumeRequest, Empty, (r) => s.resume(r)),
    Checkpoint: method(v2.CheckpointTaskRequest, Empty, (r) => s.checkpoint(r)),
    Kill: method(v2.KillRequest, Empty, (r) => s.kill(r)),
    Exec: method(v2.ExecProcessRequest, Empty, (r) => s.exec(r)),
    ResizePty: method(v2.ResizePtyRequest, Empty, (r) => s.resizePty(r)),
    CloseIO: method(v2.CloseIORequest, Empty, (r) => s.closeIO(r)),
    Update: method(v2.UpdateTaskRequest, Empty, (r) => s.update(r)),
    Wait: method(v2.WaitRequest, v2.WaitResponse, (r) => s.wait(r)),
    Stats: method(v2.StatsRequest, v2.StatsResponse, (r) => s.stats(r)),
    Connect: method(v2.ConnectRequest, v2.ConnectResponse, (r) => s.connect(r)),
    Shutdown: method(v2.ShutdownRequest, Empty, (r) => s.shutdown(r)),
  };
}
