import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Integration tests boot real VMs under TCG on two cores: one file at a time.
    fileParallelism: false,
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          // A scripted hostile agent behind a fake VMM (no VM runs): garbage, huge messages, hangs.
          name: 'hostile',
          include: ['test/hostile/**/*.test.ts'],
          testTimeout: 15_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          // A private containerd driven by the real ctr; with kata-ts each task boots a VM.
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
