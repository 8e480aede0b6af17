// Four projects so the fast pure tests can run alone (`npm run test:unit`), while `npm test` runs all.
const tsJest = { "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json", diagnostics: false }] };
const common = { testEnvironment: "node", transform: tsJest, moduleFileExtensions: ["ts", "js", "json"] };

module.exports = {
  projects: [
    { ...common, displayName: "unit", testMatch: ["<rootDir>/test/unit/**/*.test.ts"] },
    // Real hosts (sshd in a namespace, the lab VM): the npm scripts run these in band, one at a time.
    { ...common, displayName: "host", testMatch: ["<rootDir>/test/host/**/*.test.ts"] },
    { ...common, displayName: "e2e", testMatch: ["<rootDir>/test/e2e/**/*.test.ts"] },
    // Seeded fault injection (connection cuts, killed runs, concurrent runs), in band like the host tier.
    { ...common, displayName: "faults", testMatch: ["<rootDir>/test/faults/**/*.test.ts"] },
  ],
};
