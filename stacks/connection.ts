// The SSH connection of a host stack, from its config (stacks/config.ts checks the keys). The
// private key, its passphrase and the password are secrets, so the whole connection travels as
// one secret: encrypted in the state, never shown by preview.
import * as pulumi from "@pulumi/pulumi";
import type { Connection } from "../providers/ssh/connection";
import { connectionWarnings, parseConnectionConfig, runningConfig } from "./config";

export function secretConnection(connection: Connection): pulumi.Output<Connection> {
  return pulumi.secret(connection);
}

/** The connection keys of a program's own namespace (`config.name`), checked as a host stack's are. */
export function connectionFromConfig(config: pulumi.Config): pulumi.Output<Connection> {
  const { all, secretKeys } = runningConfig();
  const connection = parseConnectionConfig(all, secretKeys, config.name);
  connectionWarnings(all, pulumi.getStack(), config.name).forEach((warning) => void pulumi.log.warn(warning));
  return secretConnection(connection);
}
