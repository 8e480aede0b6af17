// Discovery as a Pulumi function (invoke style): read a host once and return its IOMMU groups and
// USB buses as plain data, for a program to look at or export; render.ts turns it into text.
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
