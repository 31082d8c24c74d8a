// Runs short crun commands (kill, pause, update, delete) and turns a failure into an error that quotes crun.
import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import { AgentError } from './errors.js';

export async function runCrun(binary: string, args: string[], logFile: string, what: string): Promise<void> {
  await rm(logFile, { force: true });
  await new Promise<void>((resolve, reject) => {
    execFile(binary, args, { timeout: 30_000 }, async (err, _stdout, stderr) => {
      if (!err) return resolve();
      const log = (await readFile(logFile, 'utf8').catch(() => '')).trim();
      const detail = (log || stderr || err.message).trim().split('\n').slice(-3).join('; ');
      reject(new AgentError(status.FAILED_PRECONDITION, `${what} failed: ${detail}`));
    });
  });
}
