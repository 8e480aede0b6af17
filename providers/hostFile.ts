// HostFile: one file on the host with exactly the given content. The original bytes are backed up
// before the first write and put back on delete (a file that did not exist is removed again).
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { HostResource, hostResourceProvider } from "./hostResource";
import { ConnectionInput } from "./ssh/connection";

export const remotePath = z
  .string()
  .regex(/^\/[^\0\n]*$/, "must be an absolute path without newlines, e.g. /etc/modules-load.d/tun.conf")
  .refine((p) => !p.split("/").includes(".."), "must not contain `..`");

const HostFileInputs = z.strictObject({
  path: remotePath,
  content: z.string(),
  mode: z
    .string()
    .regex(/^0?[0-7]{3}$/, "mode must be octal such as 0644")
    .default("0644"),
});
type Inputs = z.output<typeof HostFileInputs>;

interface HostFilePlan {
  inputs: Inputs;
  current: string | undefined;
}

export const hostFileProvider = hostResourceProvider<Inputs, HostFilePlan, Record<string, never>>({
  schema: HostFileInputs,
  identity: (inputs) => inputs.path,
  replaceOnChange: ["path"],
  plan: async (host, inputs) => ({ inputs, current: (await host.readFile(inputs.path))?.toString("utf8") }),
  describe: ({ inputs, current }) =>
    current === inputs.content ? [] : [`${inputs.path}: ${current === undefined ? "create" : "rewrite"} (${Buffer.byteLength(inputs.content)} bytes)`],
  async apply(host, { inputs, current }) {
    if (current !== inputs.content) {
      await host.backupOnce(inputs.path);
      await host.writeFileAtomic(inputs.path, inputs.content, { mode: inputs.mode });
    }
    return {};
  },
  async revert(host, inputs) {
    await host.restoreBackup(inputs.path);
  },
});

export interface HostFileArgs {
  connection: pulumi.Input<ConnectionInput>;
  path: pulumi.Input<string>;
  content: pulumi.Input<string>;
  mode?: pulumi.Input<string>;
}

export class HostFile extends HostResource {
  declare readonly path: pulumi.Output<string>;
  declare readonly content: pulumi.Output<string>;

  constructor(name: string, args: HostFileArgs, opts?: pulumi.CustomResourceOptions) {
    super("HostFile", name, args, opts);
  }
}
