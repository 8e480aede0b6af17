// HostFile: one file on the host with exactly the given content. The original bytes are backed up
// before the first write and put back on delete (a file that did not exist is removed again).
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { checkInputs, parseChecked, sameProperties } from "./check";
import { dynamicProvider } from "./dynamic";
import { ConnectionInput, ConnectionSchema } from "./ssh/connection";
import { withHost } from "./ssh/host";

export const remotePath = z
  .string()
  .regex(/^\/[^\0\n]*$/, "must be an absolute path without newlines, e.g. /etc/modules-load.d/tun.conf")
  .refine((p) => !p.split("/").includes(".."), "must not contain `..`");

const HostFileSchema = z
  .object({
    connection: ConnectionSchema,
    path: remotePath,
    content: z.string(),
    mode: z
      .string()
      .regex(/^0?[0-7]{3}$/, "mode must be octal such as 0644")
      .default("0644"),
  })
  .strict();

type HostFileInputs = z.output<typeof HostFileSchema>;

export const hostFileProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news) {
    return checkInputs(HostFileSchema, news);
  },

  async diff(_id, olds: HostFileInputs, news: HostFileInputs) {
    // Another path or another host is another file: put the old one back first, then write the new one.
    const replaces = [
      ...(olds.path !== news.path ? ["path"] : []),
      ...(olds.connection?.host !== news.connection.host ? ["connection"] : []),
    ];
    // A rotated key or a new port is an update, so the state keeps a connection that `destroy` can use.
    const changes = !sameProperties(olds, news);
    return { changes, replaces, deleteBeforeReplace: true };
  },

  async create(inputs: HostFileInputs) {
    const file = parseChecked(HostFileSchema, inputs);
    await withHost(file.connection, async (host) => {
      await host.backupOnce(file.path);
      await host.writeFileAtomic(file.path, file.content, { mode: file.mode });
    });
    return { id: file.path, outs: file };
  },

  async read(id, props: HostFileInputs) {
    const content = await withHost(props.connection, (host) => host.readFile(props.path));
    // A file someone deleted reads as empty content, which `refresh` then shows as drift.
    return { id, props: { ...props, content: content?.toString("utf8") ?? "" } };
  },

  async update(_id, _olds: HostFileInputs, news: HostFileInputs) {
    const file = parseChecked(HostFileSchema, news);
    await withHost(file.connection, (host) => host.writeFileAtomic(file.path, file.content, { mode: file.mode }));
    return { outs: file };
  },

  async delete(_id, props: HostFileInputs) {
    await withHost(parseChecked(HostFileSchema, props).connection, (host) => host.restoreBackup(props.path));
  },
};

export interface HostFileArgs {
  connection: pulumi.Input<ConnectionInput>;
  path: pulumi.Input<string>;
  content: pulumi.Input<string>;
  mode?: pulumi.Input<string>;
}

export class HostFile extends pulumi.dynamic.Resource {
  declare readonly path: pulumi.Output<string>;
  declare readonly content: pulumi.Output<string>;

  constructor(name: string, args: HostFileArgs, opts?: pulumi.CustomResourceOptions) {
    super(dynamicProvider("HostFile"), name, { ...args }, {
      ...opts,
      additionalSecretOutputs: ["connection"],
    });
  }
}
