// LibvirtHost: the libvirt half of a passthrough host from one description, in dependency order:
// packages and services, storage pools, the volumes in them, the guests that use them. Its
// assertions run in the program, so `pulumi preview` stops on a volume in an undeclared pool or a
// disk that names an undeclared volume before any host is touched.
import * as pulumi from "@pulumi/pulumi";
import { HostPackages, HostPackagesArgs } from "../hostPackages/resource";
import { ConnectionInput } from "../ssh/connection";
import { LibvirtDomain, LibvirtDomainArgs } from "./domainResource";
import { StoragePool } from "./poolResource";
import type { StoragePoolInputs } from "./pool";
import type { DomainInputs } from "./domainSpec";
import { checkVolumePools, type VolumeInputs } from "./volume";
import { Volume } from "./volumeResource";

export interface LibvirtHostArgs {
  connection: pulumi.Input<ConnectionInput>;
  packages?: Omit<HostPackagesArgs, "connection">;
  pools?: StoragePoolInputs[];
  volumes?: VolumeInputs[];
  /**
   * Guests by a key of their own, which names the Pulumi resource: changing a guest's name then
   * replaces it rather than adding a second one.
   */
  domains?: Record<string, LibvirtHostDomain>;
  /**
   * Volumes ("pool/name") whose image stays on the host when the stack is destroyed (Pulumi's
   * retainOnDelete): destroy otherwise deletes every volume's image once no guest uses it.
   */
  retainOnDelete?: string[];
  /** The addresses a VfioHost binds (its boundDevices): every guest's hostdevs must be among them. */
  vfioDevices?: pulumi.Input<string[]>;
}

/** A guest's inputs; its disks are plain values, which the assertions check. */
export type LibvirtHostDomain = Omit<LibvirtDomainArgs, "connection" | "disks" | "vfioDevices"> & Pick<DomainInputs, "disks">;

/** The assertions: one message per problem, empty when the description hangs together. */
export function checkLibvirtHost(args: Pick<LibvirtHostArgs, "pools" | "volumes" | "domains" | "retainOnDelete">): string[] {
  const volumes = args.volumes ?? [];
  const declared = volumes.map((v) => `${v.pool}/${v.name}`);
  const problems = checkVolumePools(volumes, args.pools ?? []);
  (args.retainOnDelete ?? []).forEach((file, i) => {
    if (!declared.includes(file)) {
      problems.push(`retainOnDelete[${i}] is ${file}, which is not a declared volume (declared volumes: ${declared.join(", ") || "none"}); name one as "pool/name"`);
    }
  });
  for (const [key, domain] of Object.entries(args.domains ?? {})) {
    (domain.disks ?? []).forEach((disk, i) => {
      const file = `${disk.pool}/${disk.volume}`;
      if (!declared.includes(file)) {
        problems.push(
          `domains.${key}.disks[${i}] is volume ${file}, which is not declared (declared volumes: ${declared.join(", ") || "none"}); ` +
            `declare it in volumes, or correct its pool and volume`,
        );
      }
    });
  }
  return problems;
}

export class LibvirtHost extends pulumi.ComponentResource {
  readonly pools: Record<string, StoragePool> = {};
  readonly volumes: Record<string, Volume> = {};
  readonly domains: Record<string, LibvirtDomain> = {};

  constructor(name: string, args: LibvirtHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("vfio-host:index:LibvirtHost", name, {}, opts);
    const problems = checkLibvirtHost(args);
    if (problems.length > 0) throw new Error(`LibvirtHost ${name}:\n- ${problems.join("\n- ")}`);
    const connection = args.connection;
    // A component's dependsOn does not reach its children: each root of the graph carries it.
    const external = opts?.dependsOn === undefined ? [] : Array.isArray(opts.dependsOn) ? opts.dependsOn : [opts.dependsOn as pulumi.Input<pulumi.Resource>];
    const packages = args.packages && new HostPackages(`${name}-packages`, { connection, ...args.packages }, { parent: this, dependsOn: external });
    const first = [...external, ...(packages ? [packages] : [])];

    for (const pool of args.pools ?? []) {
      this.pools[pool.name] = new StoragePool(`${name}-pool-${pool.name}`, { connection, ...pool }, { parent: this, dependsOn: first });
    }
    for (const volume of args.volumes ?? []) {
      const file = `${volume.pool}/${volume.name}`;
      this.volumes[file] = new Volume(`${name}-volume-${volume.pool}-${volume.name}`, { connection, ...volume }, {
        parent: this,
        dependsOn: [this.pools[volume.pool]],
        retainOnDelete: args.retainOnDelete?.includes(file),
      });
    }
    for (const [key, domain] of Object.entries(args.domains ?? {})) {
      const disks = (domain.disks ?? []).map((d) => this.volumes[`${d.pool}/${d.volume}`]);
      this.domains[key] = new LibvirtDomain(`${name}-domain-${key}`, { connection, ...domain, vfioDevices: args.vfioDevices }, {
        parent: this,
        dependsOn: [...first, ...disks],
      });
    }
    this.registerOutputs({});
  }
}
