const js = require("@eslint/js");
const tseslint = require("typescript-eslint");

module.exports = tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "coverage/**", "**/*.js"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      // Dynamic providers must `require` modules inside their methods (the closure serializer
      // would otherwise capture them), so require() is allowed.
      "@typescript-eslint/no-require-imports": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      // Inputs are checked for control characters on purpose (paths, names, XML text).
      "no-control-regex": "off",
    },
  },
);
