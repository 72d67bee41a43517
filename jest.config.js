/** Jest runs TypeScript through @swc/jest (fast, no type-check); `npm run typecheck` runs tsc. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.(t|j)sx?$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }] },
  // cookie@2 (required by fastify's light-my-request, i.e. app.inject) ships ESM only; Node 20
  // cannot require() it inside jest, so swc compiles it to CommonJS like our own sources.
  transformIgnorePatterns: ['/node_modules/(?!cookie/)'],
  // Privileged suites (cgroups, CRIU, netns) share the kernel: run files one at a time there,
  // unit suites are fast either way.
  maxWorkers: 2,
  testTimeout: 30000,
};
