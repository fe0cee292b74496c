import type { Caller } from '../domain/caller.js';
import { ERRORS } from '../domain/errors.js';
import type { Alert, Investigation } from '../domain/model.js';
import type { ListQuery, Page, Store } from '../domain/store.js';
import type { MachinesService } from './machines.js';

/**
 * Reads of alerts and investigations (contract §2 rows 22-25), with the visibility rule of
 * contract §7: an alert or investigation of a machine the caller cannot see does not exist.
 * Alerts are raised by ActionsService from machines' reports, investigations started there.
 */
export class AlertsService {
  constructor(
    private readonly store: Store,
    private readonly machines: MachinesService,
  ) {}

  async getAlert(caller: Caller, id: string): Promise<Alert> {
    const alert = await this.store.getAlert(caller.tenantId, id);
    if (!alert || !(await this.machines.visible(caller, alert.machineId))) throw ERRORS.AlertNotFound(id);
    return alert;
  }

  listAlerts(caller: Caller, query: Omit<ListQuery, 'deviceGroups'>): Promise<Page<Alert>> {
    return this.store.listAlerts(caller.tenantId, { ...query, deviceGroups: caller.deviceGroups });
  }

  async getInvestigation(caller: Caller, id: string): Promise<Investigation> {
    const investigation = await this.store.getInvestigation(caller.tenantId, id);
    if (!investigation || !(await this.machines.visible(caller, investigation.machineId))) throw ERRORS.InvestigationNotFound(id);
    return investigation;
  }

  listInvestigations(caller: Caller, query: Omit<ListQuery, 'deviceGroups'>): Promise<Page<Investigation>> {
    return this.store.listInvestigations(caller.tenantId, { ...query, deviceGroups: caller.deviceGroups });
  }
}
