// Discovery as a Pulumi function (invoke style): read a host once and return its IOMMU groups and
// USB buses as plain data, for a program to look at or export; render.ts turns it into text.
import * as pulumi from "@pulumi/pulumi";
import { ConnectionInput, ConnectionSchema } from "../ssh/connection";
import { withHost } from "../ssh/host";
import { readVfioHostFacts } from "../vfioBinding/readFacts";
import { HostDiscovery, buildHostDiscovery } from "./inventory";

/** Reads the host behind `connection` (one SSH command, nothing written). */
export async function discoverHost(connection: ConnectionInput): Promise<HostDiscovery> {
  const parsed = ConnectionSchema.safeParse(connection);
  if (!parsed.success) {
    throw new Error(`discoverHost: ${parsed.error.issues.map((issue) => `${issue.path.join(".") || "connection"}: ${issue.message}`).join("; ")}`);
  }
  return withHost(parsed.data, async (host) => buildHostDiscovery(host.label, await readVfioHostFacts(host)));
}

/**
 * discoverHost for a connection that is itself an output, such as stacks/connection.ts's. The
 * connection is secret (it holds the key), which would make the result secret too; the result
 * holds nothing secret, so it is unwrapped to stay readable in `pulumi stack output`.
 */
export function discoverHostOutput(connection: pulumi.Input<ConnectionInput>): pulumi.Output<HostDiscovery> {
  return pulumi.unsecret(pulumi.output(connection).apply(discoverHost));
}
