// The workspace package's entry: the compiled providers. A file, not a `main` path, because Node
// resolves `main` from the symlink in node_modules, where `../dist` does not exist.
module.exports = require("../dist/providers/index.js");
