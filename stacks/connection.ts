// The SSH connection of a host stack, from its config. The private key and password are secrets
// (`pulumi config set --secret sshPrivateKey < key`), so the whole connection travels as a secret.
import * as pulumi from "@pulumi/pulumi";
import type { ConnectionInput } from "../providers/ssh/connection";

export function connectionFromConfig(config: pulumi.Config): pulumi.Output<ConnectionInput> {
  const privateKey = config.getSecret("sshPrivateKey");
  const password = config.getSecret("sshPassword");
  return pulumi.all([privateKey, password]).apply(([key, pass]) => ({
    host: config.require("host"),
    port: config.getNumber("port") ?? 22,
    user: config.get("user") ?? "root",
    hostKey: config.get("hostKey"),
    escalation: config.get("escalation") as ConnectionInput["escalation"],
    insecureTrustOnFirstUse: config.getBoolean("insecureTrustOnFirstUse"),
    ...(key ? { privateKey: key } : {}),
    ...(pass ? { password: pass } : {}),
  }));
}
