import type { Caller } from '../domain/caller.js';
import { ERRORS } from '../domain/errors.js';
import type { Machine } from '../domain/model.js';
import type { ListQuery, Page, Store } from '../domain/store.js';

/** The visibility rule of contract §7: all device groups, or the machine's group among the user's. */
export function canSee(caller: Caller, machine: Pick<Machine, 'rbacGroupId'>): boolean {
  return caller.deviceGroups === null || (machine.rbacGroupId !== null && caller.deviceGroups.includes(machine.rbacGroupId));
}

/**
 * Machine lookups with the visibility rule of contract §7: a machine outside a delegated user's
 * device groups does not exist for that user, exactly as one of another tenant does not.
 */
export class MachinesService {
  constructor(private readonly store: Store) {}

  /** GET /api/machines/{id}: by id, aadDeviceId or computerDnsName. */
  async get(caller: Caller, key: string): Promise<Machine> {
    const machine = await this.store.findMachine(caller.tenantId, key, { aadDeviceId: true, computerDnsName: true });
    if (!machine || !canSee(caller, machine)) throw ERRORS.ResourceNotFound(key);
    return machine;
  }

  /** The target of an action route: by id or aadDeviceId. */
  async resolveForAction(caller: Caller, key: string): Promise<Machine> {
    const machine = await this.store.findMachine(caller.tenantId, key, { aadDeviceId: true, computerDnsName: false });
    if (!machine || !canSee(caller, machine)) throw ERRORS.ResourceNotFound(key);
    return machine;
  }

  async visible(caller: Caller, machineId: string): Promise<boolean> {
    if (caller.deviceGroups === null) return true;
    const machine = await this.store.findMachine(caller.tenantId, machineId, { aadDeviceId: false, computerDnsName: false });
    return machine !== null && canSee(caller, machine);
  }

  list(caller: Caller, query: Omit<ListQuery, 'deviceGroups'>): Promise<Page<Machine>> {
    return this.store.listMachines(caller.tenantId, { ...query, deviceGroups: caller.deviceGroups });
  }

  /** Machines the caller can see that had the (canonical) address at some time in [from, to]. */
  findByIp(caller: Caller, ip: string, from: number, to: number, limit: number): Promise<Machine[]> {
    return this.store.findMachinesByIp(caller.tenantId, ip, from, to, caller.deviceGroups, limit);
  }
}
