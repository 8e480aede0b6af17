// What vfio-host keeps on a host, below /var/lib/vfio-host, apart from the trial boots' files.

/** Where originals are kept: the same path below this directory. */
export const BACKUP_ROOT = "/var/lib/vfio-host/backup";

/**
 * What a stack did on a host that the host cannot tell afterwards (that it enabled a service, that
 * it imported an image) is recorded below this directory before the change: a run killed after the
 * change, before Pulumi recorded it, finds it again as the stack's own (a StackOnHost in the
 * record), and destroy gives it back. Objects that can carry the mark themselves (libvirt's pools
 * and domains) carry it instead (libvirt/stackUuid.ts).
 */
export const OWNED_ROOT = "/var/lib/vfio-host/owned";
