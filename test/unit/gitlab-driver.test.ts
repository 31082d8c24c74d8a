// The pure parts of the GitLab custom executor driver.
import { describe, expect, it } from 'vitest';
import { configJson, containerId, DriverError, failureCodes } from '../../shim/src/gitlab/driver.js';

describe('GitLab driver', () => {
  it('takes the failure exit codes the runner gives, with fallbacks for bad or missing ones', () => {
    expect(failureCodes({ BUILD_FAILURE_EXIT_CODE: '3', SYSTEM_FAILURE_EXIT_CODE: '4' })).toEqual({ build: 3, system: 4 });
    expect(failureCodes({ BUILD_FAILURE_EXIT_CODE: 'x', SYSTEM_FAILURE_EXIT_CODE: '999' })).toEqual({ build: 1, system: 2 });
  });

  it('names one container per runner and job, and refuses to run outside a runner', () => {
    expect(containerId({ CUSTOM_ENV_CI_JOB_ID: '1234', CUSTOM_ENV_CI_RUNNER_ID: '56' })).toBe('gitlab-56-1234');
    expect(containerId({ CUSTOM_ENV_CI_JOB_ID: '9' })).toBe('gitlab-0-9');
    expect(() => containerId({})).toThrow(DriverError);
    expect(() => containerId({ CUSTOM_ENV_CI_JOB_ID: '1; rm -rf /' })).toThrow('CUSTOM_ENV_CI_JOB_ID');
  });

  it('prints the config the runner reads', () => {
    expect(JSON.parse(configJson('0.1.0', 'host1'))).toEqual({ builds_dir: '/builds', cache_dir: '/cache', builds_dir_is_shared: false, hostname: 'host1', driver: { name: 'kata-ts', version: '0.1.0' } });
  });
});
