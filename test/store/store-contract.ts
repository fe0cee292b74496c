import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IP_RANGE_GAP_MS, IP_RANGES_PER_MACHINE } from '../../src/domain/ip.js';
import type { Alert, Machine, MachineAction } from '../../src/domain/model.js';
import type { ListQuery, Store } from '../../src/domain/store.js';
import { hexId } from '../support/harness.js';

/**
 * What every Store backend must do. Each backend's test file calls this with a way to open a
 * fresh, empty store.
 */
export function storeContract(name: string, open: () => Promise<{ store: Store; dispose(): Promise<void> }>) {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    let dispose: () => Promise<void>;
    beforeAll(async () => {
      ({ store, dispose } = await open());
    });
    afterAll(async () => {
      await dispose?.();
    });

    async function tenantWithMachine(overrides: Partial<Machine> = {}) {
      const tenantId = randomUUID();
      await store.upsertTenant({ id: tenantId, name: 't' });
      const machine: Machine = {
        tenantId,
        id: hexId(),
        computerDnsName: `m-${randomUUID().slice(0, 8)}.local`,
        firstSeen: 1,
        lastSeen: 2,
        osPlatform: 'Linux',
        osVersion: null,
        osProcessor: null,
        version: null,
        osBuild: null,
        lastIpAddress: '10.0.0.1',
        lastExternalIpAddress: null,
        agentVersion: null,
        osArchitecture: null,
        healthStatus: 'Active',
        defenderAvStatus: null,
        onboardingStatus: 'Onboarded',
        deviceValue: 'Normal',
        rbacGroupId: 7,
        rbacGroupName: 'g',
        riskScore: 'None',
        exposureLevel: 'None',
        isAadJoined: true,
        aadDeviceId: randomUUID(),
        machineTags: ['a', "b'c"],
        ipAddresses: [{ ipAddress: '10.0.0.1', macAddress: null, type: 'Ethernet', operationalStatus: 'Up' }],
        offboardedAt: null,
        ...overrides,
      };
      await store.upsertMachine(machine);
      return { tenantId, machine };
    }

    function newAction(tenantId: string, machine: Machine, overrides: Partial<MachineAction> = {}): MachineAction {
      return {
        id: randomUUID(),
        tenantId,
        type: 'Isolate',
        title: null,
        requestor: 'app',
        requestorId: 'app-id',
        requestorComment: 'c',
        status: 'Pending',
        machineId: machine.id,
        computerDnsName: machine.computerDnsName,
        creationDateTimeUtc: 1000,
        lastUpdateDateTimeUtc: 1000,
        cancellationRequestor: null,
        cancellationComment: null,
        cancellationDateTimeUtc: null,
        errorHResult: 0,
        scope: 'Full',
        externalId: null,
        requestSource: 'PublicApi',
        relatedFileInfo: null,
        commands: [],
        troubleshootInfo: null,
        conflictKey: 'Isolation',
        startedAt: null,
        ...overrides,
      };
    }

    const all: ListQuery = { orderBy: [], top: 100, skip: 0, count: true, deviceGroups: null };

    it('stores and reads back machines by id, aadDeviceId and DNS name', async () => {
      const { tenantId, machine } = await tenantWithMachine();
      expect(await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false })).toEqual(machine);
      expect((await store.findMachine(tenantId, machine.aadDeviceId!, { aadDeviceId: true, computerDnsName: false }))?.id).toBe(machine.id);
      expect(await store.findMachine(tenantId, machine.aadDeviceId!, { aadDeviceId: false, computerDnsName: false })).toBeNull();
      expect(
        (await store.findMachine(tenantId, machine.computerDnsName.toUpperCase(), { aadDeviceId: false, computerDnsName: true }))?.id,
      ).toBe(machine.id);
      expect(await store.findMachine(randomUUID(), machine.id, { aadDeviceId: true, computerDnsName: true })).toBeNull();
      await store.upsertMachine({ ...machine, lastSeen: 99 });
      expect((await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false }))?.lastSeen).toBe(99);
    });

    it('inserts an action with its created event and reads it back unchanged', async () => {
      const { tenantId, machine } = await tenantWithMachine();
      const action = newAction(tenantId, machine, {
        type: 'LiveResponse',
        conflictKey: 'LiveResponse',
        commands: [
          { index: 0, startTime: null, endTime: null, commandStatus: 'Created', errors: [], command: { type: 'GetFile', params: [{ key: 'Path', value: '/x' }] } },
        ],
        relatedFileInfo: { fileIdentifier: 'a'.repeat(40), fileIdentifierType: 'Sha1' },
      });
      expect(await store.insertAction(action, { at: 1000, actor: 'app', comment: 'c' })).toBe('inserted');
      expect(await store.getAction(tenantId, action.id)).toEqual(action);
      expect(await store.getAction(randomUUID(), action.id)).toBeNull();
      const events = await store.listEvents(tenantId, action.id);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ kind: 'created', fromStatus: null, toStatus: 'Pending', actor: 'app', at: 1000 });
    });

    it('refuses a second active action with the same conflict key, and allows it once the first is final', async () => {
      const { tenantId, machine } = await tenantWithMachine();
      const first = newAction(tenantId, machine);
      expect(await store.insertAction(first, { at: 1, actor: 'a', comment: null })).toBe('inserted');
      const second = newAction(tenantId, machine);
      expect(await store.insertAction(second, { at: 2, actor: 'a', comment: null })).toBe('conflict');
      expect(await store.getAction(tenantId, second.id)).toBeNull();
      expect(await store.listEvents(tenantId, second.id)).toEqual([]);
      const other = newAction(tenantId, machine, { type: 'RunAntiVirusScan', conflictKey: 'RunAntiVirusScan' });
      expect(await store.insertAction(other, { at: 2, actor: 'a', comment: null })).toBe('inserted');
      await store.transitionAction({ tenantId, actionId: first.id, from: ['Pending', 'InProgress'], to: 'Failed', patch: {}, event: { at: 3, actor: 'm', comment: null } });
      expect(await store.insertAction(second, { at: 4, actor: 'a', comment: null })).toBe('inserted');
    });

    it('transitions only from the allowed statuses, with one event each', async () => {
      const { tenantId, machine } = await tenantWithMachine();
      const action = newAction(tenantId, machine);
      await store.insertAction(action, { at: 1, actor: 'a', comment: null });
      const started = await store.transitionAction({
        tenantId,
        actionId: action.id,
        from: ['Pending'],
        to: 'InProgress',
        patch: { startedAt: 5 },
        event: { at: 5, actor: 'machine', comment: null },
      });
      expect(started).toMatchObject({ status: 'InProgress', startedAt: 5, lastUpdateDateTimeUtc: 5 });
      expect(
        await store.transitionAction({ tenantId, actionId: action.id, from: ['Pending'], to: 'InProgress', patch: {}, event: { at: 6, actor: 'm', comment: null } }),
      ).toBeNull();
      const done = await store.transitionAction({
        tenantId,
        actionId: action.id,
        from: ['Pending', 'InProgress'],
        to: 'Failed',
        patch: { errorHResult: -2147024891, troubleshootInfo: 'access denied' },
        event: { at: 7, actor: 'machine', comment: 'failed', detail: { exit: 1 } },
      });
      expect(done).toMatchObject({ status: 'Failed', errorHResult: -2147024891, troubleshootInfo: 'access denied' });
      // Another tenant cannot touch it.
      expect(
        await store.transitionAction({ tenantId: randomUUID(), actionId: action.id, from: ['Failed'], to: 'Cancelled', patch: {}, event: { at: 8, actor: 'x', comment: null } }),
      ).toBeNull();
      const events = await store.listEvents(tenantId, action.id);
      expect(events.map((e) => [e.fromStatus, e.toStatus])).toEqual([
        [null, 'Pending'],
        ['Pending', 'InProgress'],
        ['InProgress', 'Failed'],
      ]);
      expect(events[2]!.detail).toEqual({ exit: 1 });
    });

    it('of many concurrent transitions from the same status exactly one wins', async () => {
      const { tenantId, machine } = await tenantWithMachine();
      const action = newAction(tenantId, machine);
      await store.insertAction(action, { at: 1, actor: 'a', comment: null });
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          store.transitionAction({
            tenantId,
            actionId: action.id,
            from: ['Pending', 'InProgress'],
            to: i % 2 ? 'Cancelled' : 'Succeeded',
            patch: {},
            event: { at: 10 + i, actor: `a${i}`, comment: null },
          }),
        ),
      );
      expect(results.filter((r) => r !== null)).toHaveLength(1);
      expect(await store.listEvents(tenantId, action.id)).toHaveLength(2);
    });

    it('lists with filters, order, paging, counts and device groups, per tenant', async () => {
      const { tenantId, machine } = await tenantWithMachine({ rbacGroupId: 1 });
      const other = await tenantWithMachine();
      for (let i = 0; i < 7; i++) {
        await store.insertAction(newAction(tenantId, machine, { creationDateTimeUtc: 100 + i, conflictKey: `k${i}` }), { at: 1, actor: 'a', comment: null });
      }
      await store.insertAction(newAction(other.tenantId, other.machine), { at: 1, actor: 'a', comment: null });
      const page = await store.listActions(tenantId, { ...all, top: 3, skip: 0 });
      expect(page.items.map((a) => a.creationDateTimeUtc)).toEqual([106, 105, 104]);
      expect(page.count).toBe(7);
      expect(page.hasMore).toBe(true);
      const last = await store.listActions(tenantId, { ...all, top: 3, skip: 6 });
      expect(last.items.map((a) => a.creationDateTimeUtc)).toEqual([100]);
      expect(last.hasMore).toBe(false);
      const filtered = await store.listActions(tenantId, {
        ...all,
        filter: { kind: 'compare', op: 'ge', property: 'creationDateTimeUtc', value: { kind: 'datetime', value: 105 } },
        orderBy: [{ property: 'creationDateTimeUtc', direction: 'asc' }],
      });
      expect(filtered.items.map((a) => a.creationDateTimeUtc)).toEqual([105, 106]);
      expect((await store.listActions(tenantId, { ...all, deviceGroups: [2] })).items).toEqual([]);
      expect((await store.listActions(tenantId, { ...all, deviceGroups: [1] })).count).toBe(7);
      expect((await store.listActions(tenantId, { ...all, deviceGroups: [] })).count).toBe(0);

      const machines = await store.listMachines(tenantId, {
        ...all,
        filter: { kind: 'any', property: 'machineTags', variable: 't', value: { kind: 'string', value: "b'c" } },
      });
      expect(machines.items.map((m) => m.id)).toEqual([machine.id]);
      const noTag = await store.listMachines(tenantId, {
        ...all,
        filter: { kind: 'any', property: 'machineTags', variable: 't', value: { kind: 'string', value: 'zzz' } },
      });
      expect(noTag.count).toBe(0);
    });

    it('keeps applications, users and signing keys per tenant', async () => {
      const { tenantId } = await tenantWithMachine();
      const app = {
        tenantId,
        clientId: randomUUID(),
        objectId: randomUUID(),
        displayName: 'App',
        secretHash: 'scrypt$1$2$3$salt$hash',
        roles: ['Machine.Isolate'],
        createdAt: 5,
      };
      await store.upsertApplication(app);
      expect(await store.getApplication(tenantId, app.clientId)).toEqual(app);
      expect(await store.getApplication(randomUUID(), app.clientId)).toBeNull();
      await store.upsertApplication({ ...app, roles: [] });
      expect(await store.listApplications(tenantId)).toEqual([{ ...app, roles: [] }]);
      expect(await store.deleteApplication(tenantId, app.clientId)).toBe(true);
      expect(await store.deleteApplication(tenantId, app.clientId)).toBe(false);

      const user = {
        tenantId,
        objectId: randomUUID(),
        upn: 'Ana@Example.test',
        passwordHash: 'h',
        scopes: ['Machine.Read'],
        rolePermissions: ['View data'],
        deviceGroups: [1, 2],
        createdAt: 6,
      };
      await store.upsertUser(user);
      expect(await store.getUserByUpn(tenantId, 'ana@example.TEST')).toEqual(user);
      expect(await store.getUserByObjectId(tenantId, user.objectId)).toEqual(user);
      await store.upsertUser({ ...user, deviceGroups: null });
      expect((await store.listUsers(tenantId))[0]!.deviceGroups).toBeNull();
      expect(await store.deleteUser(tenantId, user.objectId)).toBe(true);
      expect(await store.getUserByUpn(tenantId, user.upn)).toBeNull();

      const key = (kid: string, createdAt: number) => ({
        kid,
        alg: 'RS256' as const,
        privatePem: 'pem',
        publicJwk: { kty: 'RSA', kid },
        createdAt,
        retiredAt: null,
      });
      const before = (await store.listSigningKeys()).length;
      await store.insertSigningKey(key(`k1-${tenantId}`, 1));
      await store.insertSigningKey(key(`k2-${tenantId}`, 2));
      await store.retireSigningKeysExcept(`k2-${tenantId}`, 100);
      const keys = await store.listSigningKeys();
      expect(keys.find((k) => k.kid === `k1-${tenantId}`)?.retiredAt).toBe(100);
      expect(keys.find((k) => k.kid === `k2-${tenantId}`)?.retiredAt).toBeNull();
      await store.pruneSigningKeys(101);
      expect((await store.listSigningKeys()).map((k) => k.kid)).not.toContain(`k1-${tenantId}`);
      expect((await store.listSigningKeys()).length).toBeLessThanOrEqual(before + 1);
    });

    it('with a limit, refuses an action when the tenant has that many unfinished ones of its type', async () => {
      const { tenantId, machine } = await tenantWithMachine();
      const lr = (i: number) => newAction(tenantId, machine, { type: 'LiveResponse', conflictKey: `lr${i}` });
      expect(await store.insertAction(lr(1), { at: 1, actor: 'a', comment: null }, 2)).toBe('inserted');
      expect(await store.insertAction(lr(2), { at: 1, actor: 'a', comment: null }, 2)).toBe('inserted');
      const third = lr(3);
      expect(await store.insertAction(third, { at: 1, actor: 'a', comment: null }, 2)).toBe('limit');
      expect(await store.getAction(tenantId, third.id)).toBeNull();
      expect(await store.insertAction(newAction(tenantId, machine, { conflictKey: 'other' }), { at: 1, actor: 'a', comment: null }, 2)).toBe('inserted');
    });

    it('serves agents: enrollment secrets, credentials, check-ins, active and overdue actions', async () => {
      const { tenantId, machine } = await tenantWithMachine({ healthStatus: 'Inactive', lastSeen: 1 });
      const secret = { id: `e-${randomUUID()}`, tenantId, label: 'default', secretHash: 'h', rbacGroupId: 3, rbacGroupName: 'g3', createdAt: 1 };
      await store.upsertEnrollmentSecret(secret);
      expect(await store.getEnrollmentSecret(secret.id)).toEqual(secret);
      expect(await store.listEnrollmentSecrets(tenantId)).toEqual([secret]);
      await store.deleteEnrollmentSecrets(tenantId, 'default');
      expect(await store.getEnrollmentSecret(secret.id)).toBeNull();

      const credential = { tokenHash: `t-${randomUUID()}`, tenantId, machineId: machine.id, createdAt: 1, revokedAt: null };
      // The machine exists: it cannot be attached as a new one.
      expect(await store.attachAgent({ ...machine, agentVersion: '1.0' }, credential, { kind: 'new' })).toBe(false);
      expect(await store.findAgentCredential(credential.tokenHash)).toBeNull();
      const grant = { tokenHash: `g-${randomUUID()}`, tenantId, machineId: machine.id, createdAt: 1, expiresAt: 100, usedAt: null };
      await store.insertReenrollGrant(grant);
      expect(await store.findReenrollGrant(grant.tokenHash)).toEqual(grant);
      expect(await store.attachAgent({ ...machine, agentVersion: '1.0' }, credential, { kind: 'grant', tokenHash: grant.tokenHash })).toBe(true);
      expect(await store.findReenrollGrant(grant.tokenHash)).toEqual({ ...grant, usedAt: 1 });
      expect(await store.findAgentCredential(credential.tokenHash)).toEqual(credential);
      expect((await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false }))?.agentVersion).toBe('1.0');
      // Attaching again with the current credential replaces it: it is revoked in the same transaction.
      const second = { ...credential, tokenHash: `t-${randomUUID()}`, createdAt: 5 };
      expect(await store.attachAgent(machine, second, { kind: 'credential', tokenHash: credential.tokenHash })).toBe(true);
      expect((await store.findAgentCredential(credential.tokenHash))?.revokedAt).toBe(5);
      expect((await store.findAgentCredential(second.tokenHash))?.revokedAt).toBeNull();
      // A spent proof proves nothing more, and writes nothing.
      const third = { ...credential, tokenHash: `t-${randomUUID()}`, createdAt: 6 };
      expect(await store.attachAgent({ ...machine, computerDnsName: 'x' }, third, { kind: 'credential', tokenHash: credential.tokenHash })).toBe(false);
      expect(await store.attachAgent({ ...machine, computerDnsName: 'x' }, third, { kind: 'grant', tokenHash: grant.tokenHash })).toBe(false);
      expect(await store.findAgentCredential(third.tokenHash)).toBeNull();
      expect((await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false }))?.computerDnsName).toBe(machine.computerDnsName);
      // A transition that asks for it offboards the machine in its own transaction.
      const pendingGrant = { ...grant, tokenHash: `g-${randomUUID()}` };
      await store.insertReenrollGrant(pendingGrant);
      const offboard = newAction(tenantId, machine, { type: 'Offboard', conflictKey: 'Offboard' });
      await store.insertAction(offboard, { at: 1, actor: 'a', comment: null });
      const refused = await store.transitionAction({ tenantId, actionId: offboard.id, from: ['InProgress'], to: 'Succeeded', patch: {}, event: { at: 8, actor: 'm', comment: null }, offboardsMachine: true });
      expect(refused).toBeNull();
      expect((await store.findAgentCredential(second.tokenHash))?.revokedAt).toBeNull(); // nothing applied, nothing revoked
      expect((await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false }))?.offboardedAt).toBeNull();
      await store.transitionAction({ tenantId, actionId: offboard.id, from: ['Pending'], to: 'Succeeded', patch: {}, event: { at: 9, actor: 'm', comment: null }, offboardsMachine: true });
      expect((await store.findAgentCredential(second.tokenHash))?.revokedAt).toBe(9);
      expect(await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false })).toMatchObject({
        offboardedAt: 9,
        healthStatus: 'Inactive',
        onboardingStatus: 'CanBeOnboarded',
      });
      expect(await store.findReenrollGrant(pendingGrant.tokenHash)).toBeNull(); // grants issued before the offboard die with it
      expect(await store.findReenrollGrant(grant.tokenHash)).toMatchObject({ usedAt: 1 }); // used ones stay, as a record
      // An offboarded machine takes no actions, and a check-in does not make it Active again.
      const late = newAction(tenantId, machine, { conflictKey: 'after-offboard' });
      expect(await store.insertAction(late, { at: 10, actor: 'a', comment: null })).toBe('offboarded');
      expect(await store.getAction(tenantId, late.id)).toBeNull();
      await store.recordCheckin(tenantId, machine.id, 11, {});
      expect(await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false })).toMatchObject({ healthStatus: 'Inactive', lastSeen: 1 });
      // A grant issued after the offboard re-attaches (and onboards) it: an administrator's explicit act.
      const revive = { ...grant, tokenHash: `g-${randomUUID()}`, createdAt: 12, expiresAt: 100 };
      await store.insertReenrollGrant(revive);
      const fourth = { ...credential, tokenHash: `t-${randomUUID()}`, createdAt: 13 };
      expect(await store.attachAgent({ ...machine, offboardedAt: null }, fourth, { kind: 'grant', tokenHash: revive.tokenHash })).toBe(true);
      expect((await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false }))?.offboardedAt).toBeNull();

      await store.recordCheckin(tenantId, machine.id, 50, { agentVersion: '9.9', lastIpAddress: '10.9.9.9' });
      let seen = await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false });
      expect(seen).toMatchObject({ lastSeen: 50, healthStatus: 'Active', agentVersion: '9.9', lastIpAddress: '10.9.9.9', osPlatform: 'Linux' });
      await store.markInactiveMachines(40); // other tenants' old machines may change; this one is newer
      seen = await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false });
      expect(seen?.healthStatus).toBe('Active');
      expect(await store.markInactiveMachines(51)).toBeGreaterThanOrEqual(1);
      seen = await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false });
      expect(seen?.healthStatus).toBe('Inactive');

      const pending = newAction(tenantId, machine, { creationDateTimeUtc: 10, conflictKey: 'p' });
      const running = newAction(tenantId, machine, { creationDateTimeUtc: 20, conflictKey: 'r', type: 'RunAntiVirusScan' });
      const done = newAction(tenantId, machine, { creationDateTimeUtc: 30, conflictKey: 'd' });
      for (const a of [pending, running, done]) await store.insertAction(a, { at: 1, actor: 'a', comment: null });
      await store.transitionAction({ tenantId, actionId: running.id, from: ['Pending'], to: 'InProgress', patch: { startedAt: 25 }, event: { at: 25, actor: 'm', comment: null } });
      await store.transitionAction({ tenantId, actionId: done.id, from: ['Pending'], to: 'Cancelled', patch: {}, event: { at: 31, actor: 'u', comment: null } });
      expect((await store.listActiveActionsForMachine(tenantId, machine.id)).map((a) => a.id)).toEqual([pending.id, running.id]);
      expect((await store.getActionsOfMachine(tenantId, machine.id, [done.id, randomUUID()])).map((a) => a.status)).toEqual(['Cancelled']);
      expect(await store.getActionsOfMachine(tenantId, 'f'.repeat(40), [done.id])).toEqual([]);
      const overduePending = await store.listOverdueActions({ status: 'Pending', before: 15 }, 100);
      expect(overduePending.map((a) => a.id)).toContain(pending.id);
      expect(overduePending.map((a) => a.id)).not.toContain(running.id);
      expect((await store.listOverdueActions({ status: 'InProgress', types: ['RunAntiVirusScan'], before: 26 }, 100)).map((a) => a.id)).toContain(running.id);
      expect((await store.listOverdueActions({ status: 'InProgress', types: ['Isolate'], before: 26 }, 100)).map((a) => a.id)).not.toContain(running.id);
      expect((await store.listOverdueActions({ status: 'InProgress', types: ['RunAntiVirusScan'], before: 24 }, 100)).map((a) => a.id)).not.toContain(running.id);

      expect(await store.appendEvent(tenantId, done.id, 'late-report', { at: 40, actor: 'm', comment: 'late', detail: { reportId: 'r1' }, reportId: 'r1' })).toBe(true);
      // The same report again is not recorded twice.
      expect(await store.appendEvent(tenantId, done.id, 'late-report', { at: 41, actor: 'm', comment: 'late', detail: { reportId: 'r1' }, reportId: 'r1' })).toBe(false);
      expect(await store.appendEvent(tenantId, randomUUID(), 'late-report', { at: 41, actor: 'm', comment: 'x' })).toBe(false);
      const history = await store.listEvents(tenantId, done.id);
      expect(history.at(-1)).toMatchObject({ kind: 'late-report', fromStatus: 'Cancelled', toStatus: 'Cancelled', detail: { reportId: 'r1' } });
      expect((await store.getAction(tenantId, done.id))?.lastUpdateDateTimeUtc).toBe(31);
    });

    it('a new machine is attached with its credential; enrollment secrets are revoked one by one', async () => {
      const { tenantId, machine } = await tenantWithMachine();
      const fresh = { ...machine, id: hexId(), computerDnsName: 'fresh.local' };
      const credential = { tokenHash: `t-${randomUUID()}`, tenantId, machineId: fresh.id, createdAt: 3, revokedAt: null };
      expect(await store.attachAgent(fresh, credential, { kind: 'new' })).toBe(true);
      expect(await store.findMachine(tenantId, fresh.id, { aadDeviceId: false, computerDnsName: false })).toEqual(fresh);
      expect(await store.findAgentCredential(credential.tokenHash)).toEqual(credential);
      // A credential proves only its own machine.
      const other = { tokenHash: `t-${randomUUID()}`, tenantId, machineId: machine.id, createdAt: 4, revokedAt: null };
      expect(await store.attachAgent(machine, other, { kind: 'credential', tokenHash: credential.tokenHash })).toBe(false);
      expect((await store.findAgentCredential(credential.tokenHash))?.revokedAt).toBeNull();

      const a = { id: `e-${randomUUID()}`, tenantId, label: 'a', secretHash: 'h', rbacGroupId: 1, rbacGroupName: 'g', createdAt: 1 };
      const b = { ...a, id: `e-${randomUUID()}`, label: 'b' };
      await store.upsertEnrollmentSecret(a);
      await store.upsertEnrollmentSecret(b);
      expect(await store.deleteEnrollmentSecret(randomUUID(), a.id)).toBe(false); // another tenant's id: nothing
      expect(await store.deleteEnrollmentSecret(tenantId, a.id)).toBe(true);
      expect(await store.deleteEnrollmentSecret(tenantId, a.id)).toBe(false);
      expect(await store.getEnrollmentSecret(a.id)).toBeNull();
      expect((await store.listEnrollmentSecrets(tenantId)).map((e) => e.id)).toEqual([b.id]);
    });

    it('a grant or a credential attaches exactly one of many concurrent enrollments; an expired grant none', async () => {
      const { tenantId, machine } = await tenantWithMachine();
      const grant = { tokenHash: `g-${randomUUID()}`, tenantId, machineId: machine.id, createdAt: 1, expiresAt: 1000, usedAt: null };
      await store.insertReenrollGrant(grant);
      const attempt = (proof: Parameters<Store['attachAgent']>[2], at: number) => {
        const credential = { tokenHash: `t-${randomUUID()}`, tenantId, machineId: machine.id, createdAt: at, revokedAt: null };
        return store.attachAgent(machine, credential, proof).then((won) => ({ won, credential }));
      };
      const byGrant = await Promise.all(Array.from({ length: 40 }, () => attempt({ kind: 'grant', tokenHash: grant.tokenHash }, 10)));
      const winners = byGrant.filter((r) => r.won);
      expect(winners).toHaveLength(1);
      for (const r of byGrant) expect(await store.findAgentCredential(r.credential.tokenHash)).toEqual(r.won ? r.credential : null);
      // The winner's credential is spent by a burst of re-attaches with it: again one wins.
      const current = winners[0]!.credential;
      const byCredential = await Promise.all(Array.from({ length: 40 }, () => attempt({ kind: 'credential', tokenHash: current.tokenHash }, 20)));
      expect(byCredential.filter((r) => r.won)).toHaveLength(1);
      const valid = await Promise.all([current, ...byCredential.map((r) => r.credential)].map((c) => store.findAgentCredential(c.tokenHash)));
      expect(valid.filter((c) => c !== null && c.revokedAt === null)).toHaveLength(1);
      // A grant is good until its expiry, not at it.
      const expiring = { ...grant, tokenHash: `g-${randomUUID()}`, expiresAt: 30 };
      await store.insertReenrollGrant(expiring);
      expect((await attempt({ kind: 'grant', tokenHash: expiring.tokenHash }, 30)).won).toBe(false);
      expect((await attempt({ kind: 'grant', tokenHash: expiring.tokenHash }, 29)).won).toBe(true);
      // A grant is for its machine only.
      const { machine: another } = await tenantWithMachine();
      const foreign = { ...grant, tokenHash: `g-${randomUUID()}`, tenantId: another.tenantId, machineId: another.id };
      await store.insertReenrollGrant(foreign);
      expect((await attempt({ kind: 'grant', tokenHash: foreign.tokenHash }, 40)).won).toBe(false);
    });

    describe('IP history (findbyip)', () => {
      const T = 1_700_000_000_000;
      const MIN = 60_000;
      const ip = (lastIpAddress: string, ...more: string[]) => ({
        lastIpAddress,
        ipAddresses: [lastIpAddress, ...more].map((ipAddress) => ({ ipAddress, macAddress: null, type: 'eth0', operationalStatus: 'Up' })),
      });
      const seen = async (tenantId: string, address: string, from: number, to: number, groups: number[] | null = null) =>
        (await store.findMachinesByIp(tenantId, address, from, to, groups, 100)).map((m) => m.computerDnsName);

      it('keeps when each address was seen: ranges that check-ins extend, end and reopen', async () => {
        const { tenantId, machine } = await tenantWithMachine({ computerDnsName: 'a.local' });
        // Seen with 10.0.0.5 from T to T+20 (check-ins every minute or so).
        for (let t = T; t <= T + 20 * MIN; t += MIN) await store.recordCheckin(tenantId, machine.id, t, ip('10.0.0.5'));
        expect(await seen(tenantId, '10.0.0.5', T + 5 * MIN, T + 6 * MIN)).toEqual(['a.local']);
        expect(await seen(tenantId, '10.0.0.5', T - 10 * MIN, T - 1)).toEqual([]);
        expect(await seen(tenantId, '10.0.0.5', T + 20 * MIN, T + 30 * MIN)).toEqual(['a.local']);
        expect(await seen(tenantId, '10.0.0.5', T + 20 * MIN + 1, T + 30 * MIN)).toEqual([]);
        expect(await seen(tenantId, '10.0.0.6', T, T + 30 * MIN)).toEqual([]);
        // The machine moves to 10.0.0.6 (and keeps an IPv6 address): the first range ends at its last check-in.
        await store.recordCheckin(tenantId, machine.id, T + 21 * MIN, ip('10.0.0.6', '2001:DB8::1'));
        await store.recordCheckin(tenantId, machine.id, T + 22 * MIN, ip('10.0.0.6', '2001:db8:0::1'));
        expect(await seen(tenantId, '10.0.0.5', T + 20 * MIN + 1, T + 40 * MIN)).toEqual([]);
        expect(await seen(tenantId, '10.0.0.6', T + 21 * MIN, T + 21 * MIN)).toEqual(['a.local']);
        expect(await seen(tenantId, '2001:db8::1', T + 22 * MIN, T + 22 * MIN)).toEqual(['a.local']);
        expect(await seen(tenantId, '10.0.0.6', T + 22 * MIN + 1, T + 50 * MIN)).toEqual([]);
        // Silent longer than the gap: the ranges end at the last check-in, and open again at the next.
        const back = T + 22 * MIN + IP_RANGE_GAP_MS + 1;
        await store.recordCheckin(tenantId, machine.id, back, ip('10.0.0.6'));
        expect(await seen(tenantId, '10.0.0.6', T + 23 * MIN, back - 1)).toEqual([]);
        expect(await seen(tenantId, '10.0.0.6', back, back)).toEqual(['a.local']);
        expect(await seen(tenantId, '2001:db8::1', back, back)).toEqual([]);
        // A check-in that says nothing about addresses neither extends nor ends them.
        await store.recordCheckin(tenantId, machine.id, back + 5 * MIN, { agentVersion: '2' });
        expect(await seen(tenantId, '10.0.0.6', back + 1, back + 5 * MIN)).toEqual([]);
        // Loopback addresses are not history: every machine has them.
        await store.recordCheckin(tenantId, machine.id, back + 6 * MIN, ip('127.0.0.1', '::1'));
        expect(await seen(tenantId, '127.0.0.1', 0, back + 10 * MIN)).toEqual([]);
        expect((await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false }))?.lastIpAddress).toBe('127.0.0.1');
      });

      it('answers per tenant and device group, for every machine that had the address', async () => {
        const one = await tenantWithMachine({ computerDnsName: 'b-one.local', rbacGroupId: 1 });
        const two = { ...one.machine, id: hexId(), computerDnsName: 'b-two.local', rbacGroupId: 2, aadDeviceId: null };
        await store.upsertMachine(two);
        const elsewhere = await tenantWithMachine();
        await store.recordCheckin(one.tenantId, one.machine.id, T, ip('10.9.0.1'));
        await store.recordCheckin(one.tenantId, two.id, T + MIN, ip('10.9.0.1'));
        await store.recordCheckin(elsewhere.tenantId, elsewhere.machine.id, T, ip('10.9.0.1'));
        expect(await seen(one.tenantId, '10.9.0.1', T, T + MIN)).toEqual(['b-one.local', 'b-two.local']);
        expect(await seen(one.tenantId, '10.9.0.1', T, T + MIN, [2])).toEqual(['b-two.local']);
        expect(await seen(one.tenantId, '10.9.0.1', T, T + MIN, [])).toEqual([]);
        expect(await seen(elsewhere.tenantId, '10.9.0.1', T, T)).toEqual([elsewhere.machine.computerDnsName]);
      });

      it("an offboarded machine's check-ins add nothing to its history", async () => {
        const { tenantId, machine } = await tenantWithMachine({ computerDnsName: 'gone.local' });
        await store.recordCheckin(tenantId, machine.id, T, ip('10.8.0.1'));
        const offboard = newAction(tenantId, machine, { type: 'Offboard', conflictKey: 'Offboard' });
        await store.insertAction(offboard, { at: T, actor: 'a', comment: null });
        await store.transitionAction({ tenantId, actionId: offboard.id, from: ['Pending'], to: 'Succeeded', patch: {}, event: { at: T + MIN, actor: 'm', comment: null }, offboardsMachine: true });
        await store.recordCheckin(tenantId, machine.id, T + 2 * MIN, ip('10.8.0.1'));
        await store.recordCheckin(tenantId, machine.id, T + 3 * MIN, ip('10.8.0.2'));
        expect(await seen(tenantId, '10.8.0.1', T, T)).toEqual(['gone.local']);
        expect(await seen(tenantId, '10.8.0.1', T + 2 * MIN, T + 3 * MIN)).toEqual([]);
        expect(await seen(tenantId, '10.8.0.2', T, T + 10 * MIN)).toEqual([]);
      });

      it('is bounded per machine and pruned by age', async () => {
        const { tenantId, machine } = await tenantWithMachine();
        // A machine whose address changes at every check-in: only the newest ranges stay.
        const n = IP_RANGES_PER_MACHINE + 20;
        for (let i = 0; i < n; i++) await store.recordCheckin(tenantId, machine.id, T + i * MIN, ip(`10.7.${Math.floor(i / 250)}.${(i % 250) + 1}`));
        expect(await seen(tenantId, '10.7.0.1', T, T)).toEqual([]);
        const newest = n - 1;
        expect(await seen(tenantId, `10.7.${Math.floor(newest / 250)}.${(newest % 250) + 1}`, T + newest * MIN, T + newest * MIN)).toHaveLength(1);
        const kept = n - IP_RANGES_PER_MACHINE;
        expect(await seen(tenantId, `10.7.0.${kept + 1}`, T + kept * MIN, T + kept * MIN)).toHaveLength(1);
        expect(await seen(tenantId, `10.7.0.${kept}`, T + (kept - 1) * MIN, T + (kept - 1) * MIN)).toEqual([]);
        // Pruning by age removes what ended before the cut-off, open ranges of silent machines too.
        expect(await store.pruneIpHistory(T + (newest - 1) * MIN)).toBeGreaterThan(0);
        expect(await seen(tenantId, `10.7.0.${kept + 1}`, T + kept * MIN, T + kept * MIN)).toEqual([]);
        expect(await seen(tenantId, `10.7.${Math.floor(newest / 250)}.${(newest % 250) + 1}`, T + newest * MIN, T + newest * MIN)).toHaveLength(1);
        await store.pruneIpHistory(T + newest * MIN + 1);
        expect(await seen(tenantId, `10.7.${Math.floor(newest / 250)}.${(newest % 250) + 1}`, 0, T * 2)).toEqual([]);
        // The machine comes back with its address: a fresh range.
        await store.recordCheckin(tenantId, machine.id, T * 2, ip('10.7.9.9'));
        expect(await seen(tenantId, '10.7.9.9', T * 2, T * 2)).toHaveLength(1);
      });
    });

    describe('investigations and alerts', () => {
      function alert(tenantId: string, machine: Machine, action: MachineAction, overrides: Partial<Alert> = {}): Alert {
        return {
          id: `da${Math.floor(Math.random() * 1e15)}_${Math.floor(Math.random() * 1e9)}`,
          tenantId,
          incidentId: null,
          investigationId: null,
          assignedTo: null,
          severity: 'Medium',
          status: 'New',
          classification: null,
          determination: null,
          investigationState: null,
          detectionSource: 'Antivirus',
          detectorId: 'd',
          category: 'Malware',
          threatFamilyName: 'EICAR',
          title: "'Eicar' malware was detected",
          description: 'd',
          alertCreationTime: 500,
          firstEventTime: 500,
          lastEventTime: 500,
          lastUpdateTime: 500,
          resolvedTime: null,
          machineId: machine.id,
          computerDnsName: machine.computerDnsName,
          rbacGroupName: 'g',
          threatName: 'Eicar-Signature',
          mitreTechniques: [],
          relatedUser: null,
          comments: [],
          evidence: [
            {
              entityType: 'File', evidenceCreationTime: 500, sha1: 'a'.repeat(40), sha256: null, fileName: 'eicar.com', filePath: '/tmp',
              processId: null, processCommandLine: null, processCreationTime: null, parentProcessId: null, parentProcessCreationTime: null,
              parentProcessFileName: null, parentProcessFilePath: null, ipAddress: null, url: null, registryKey: null, registryHive: null,
              registryValueType: null, registryValue: null, accountName: null, domainName: null, userSid: null, aadUserId: null,
              userPrincipalName: null, detectionStatus: 'Detected',
            },
          ],
          actionId: action.id,
          ...overrides,
        };
      }
      const scan = (tenantId: string, machine: Machine) =>
        newAction(tenantId, machine, { type: 'RunAntiVirusScan', conflictKey: 'RunAntiVirusScan', scope: 'Quick' });
      const collect = (tenantId: string, machine: Machine, at = 1000) =>
        newAction(tenantId, machine, { type: 'CollectInvestigationPackage', conflictKey: 'CollectInvestigationPackage', scope: null, creationDateTimeUtc: at, lastUpdateDateTimeUtc: at });

      it('alerts are stored with the report that raised them, only when it applies', async () => {
        const { tenantId, machine } = await tenantWithMachine({ rbacGroupId: 4 });
        const action = scan(tenantId, machine);
        await store.insertAction(action, { at: 1, actor: 'a', comment: null });
        const raised = alert(tenantId, machine, action);
        await store.transitionAction({ tenantId, actionId: action.id, from: ['Pending'], to: 'Cancelled', patch: {}, event: { at: 2, actor: 'u', comment: null } });
        // A late report changes nothing, so its alerts are not kept either.
        const late = await store.transitionAction({ tenantId, actionId: action.id, from: ['Pending', 'InProgress'], to: 'Succeeded', patch: {}, event: { at: 3, actor: 'm', comment: null }, alerts: [raised] });
        expect(late).toBeNull();
        expect(await store.getAlert(tenantId, raised.id)).toBeNull();
        const second = scan(tenantId, machine);
        await store.insertAction(second, { at: 4, actor: 'a', comment: null });
        const kept = alert(tenantId, machine, second);
        await store.transitionAction({ tenantId, actionId: second.id, from: ['Pending', 'InProgress'], to: 'Succeeded', patch: {}, event: { at: 5, actor: 'm', comment: null }, alerts: [kept] });
        expect(await store.getAlert(tenantId, kept.id)).toEqual(kept);
        expect(await store.getAlert(randomUUID(), kept.id)).toBeNull();
        const list = await store.listAlerts(tenantId, all);
        expect(list.items.map((a) => a.id)).toEqual([kept.id]);
        expect(list.count).toBe(1);
        expect((await store.listAlerts(tenantId, { ...all, deviceGroups: [4] })).count).toBe(1);
        expect((await store.listAlerts(tenantId, { ...all, deviceGroups: [5] })).count).toBe(0);
        const bySeverity = await store.listAlerts(tenantId, { ...all, filter: { kind: 'compare', op: 'eq', property: 'severity', value: { kind: 'string', value: 'High' } } });
        expect(bySeverity.count).toBe(0);
        // A failing alert insert undoes the report: one commit or none.
        const third = scan(tenantId, machine);
        await store.insertAction(third, { at: 6, actor: 'a', comment: null });
        await expect(
          store.transitionAction({ tenantId, actionId: third.id, from: ['Pending'], to: 'Succeeded', patch: {}, event: { at: 7, actor: 'm', comment: null }, alerts: [kept] }),
        ).rejects.toThrow();
        expect((await store.getAction(tenantId, third.id))?.status).toBe('Pending');
        expect(await store.listEvents(tenantId, third.id)).toHaveLength(1);
      });

      it('an investigation owns its package collection, is triggered by the newest open alert, and follows the action', async () => {
        const { tenantId, machine } = await tenantWithMachine();
        const found = scan(tenantId, machine);
        await store.insertAction(found, { at: 1, actor: 'a', comment: null });
        const older = alert(tenantId, machine, found, { alertCreationTime: 400 });
        const newer = alert(tenantId, machine, found, { alertCreationTime: 600, evidence: [{ ...alert(tenantId, machine, found).evidence[0]!, detectionStatus: 'Blocked' }] });
        await store.transitionAction({ tenantId, actionId: found.id, from: ['Pending'], to: 'Succeeded', patch: {}, event: { at: 2, actor: 'm', comment: null }, alerts: [older, newer] });

        const action = collect(tenantId, machine);
        const investigation = await store.insertInvestigation(action, { at: 1000, actor: 'app', comment: 'c' });
        if (typeof investigation === 'string') throw new Error(`unexpected ${investigation}`);
        expect(investigation).toMatchObject({ state: 'Queued', startTime: 1000, endTime: null, machineId: machine.id, triggeringAlertId: newer.id, actionId: action.id });
        expect(investigation.id).toMatch(/^[0-9]+$/);
        expect(await store.getInvestigation(tenantId, investigation.id)).toEqual(investigation);
        expect(await store.getInvestigation(randomUUID(), investigation.id)).toBeNull();
        expect(await store.getInvestigation(tenantId, 'not-a-number')).toBeNull();
        expect(await store.getAction(tenantId, action.id)).toEqual(action);
        expect(await store.getAlert(tenantId, newer.id)).toMatchObject({ investigationId: Number(investigation.id), investigationState: 'Queued' });
        // A second one while the collection runs: the conflict group refuses it, and nothing is written.
        const again = collect(tenantId, machine, 1001);
        expect(await store.insertInvestigation(again, { at: 1001, actor: 'app', comment: null })).toBe('conflict');
        expect(await store.getAction(tenantId, again.id)).toBeNull();
        expect((await store.listInvestigations(tenantId, all)).count).toBe(1);

        await store.transitionAction({ tenantId, actionId: action.id, from: ['Pending'], to: 'InProgress', patch: { startedAt: 1100 }, event: { at: 1100, actor: 'm', comment: null } });
        expect(await store.getInvestigation(tenantId, investigation.id)).toMatchObject({ state: 'Running', endTime: null });
        await store.transitionAction({ tenantId, actionId: action.id, from: ['InProgress'], to: 'Succeeded', patch: {}, event: { at: 1200, actor: 'm', comment: null } });
        // The triggering alert's file is quarantined: remediated.
        expect(await store.getInvestigation(tenantId, investigation.id)).toMatchObject({ state: 'SuccessfullyRemediated', endTime: 1200 });
        expect(await store.getAlert(tenantId, newer.id)).toMatchObject({ investigationState: 'SuccessfullyRemediated', lastUpdateTime: 1200 });
        expect(await store.getAlert(tenantId, older.id)).toMatchObject({ investigationId: null, investigationState: null });
      });

      it('each way an investigation ends, and lists with OData and device groups', async () => {
        const { tenantId, machine } = await tenantWithMachine({ rbacGroupId: 9 });
        const ends: [string, MachineAction['status'], object][] = [
          ['Failed', 'Failed', { troubleshootInfo: 'disk full' }],
          ['TerminatedBySystem', 'TimeOut', {}],
          ['TerminatedByUser', 'Cancelled', { cancellationRequestor: 'ana@x.test', cancellationComment: 'stop' }],
          ['Benign', 'Succeeded', {}],
        ];
        const ids: string[] = [];
        for (const [i, [state, status, patch]] of ends.entries()) {
          const action = collect(tenantId, machine, 2000 + i);
          const investigation = await store.insertInvestigation(action, { at: 2000 + i, actor: 'app', comment: null });
          if (typeof investigation === 'string') throw new Error(`unexpected ${investigation}`);
          expect(investigation.triggeringAlertId).toBeNull();
          await store.transitionAction({ tenantId, actionId: action.id, from: ['Pending'], to: status, patch, event: { at: 3000 + i, actor: 'm', comment: null } });
          const ended = await store.getInvestigation(tenantId, investigation.id);
          expect(ended).toMatchObject({ state, endTime: 3000 + i });
          if (status === 'Cancelled') expect(ended?.cancelledBy).toBe('ana@x.test');
          if (status === 'Failed') expect(ended?.statusDetails).toContain('disk full');
          ids.push(investigation.id);
        }
        const list = await store.listInvestigations(tenantId, all);
        expect(list.items.map((i) => i.id)).toEqual([...ids].reverse());
        const byState = await store.listInvestigations(tenantId, { ...all, filter: { kind: 'in', property: 'state', values: [{ kind: 'string', value: 'Benign' }, { kind: 'string', value: 'Failed' }] } });
        expect(byState.items.map((i) => i.state).sort()).toEqual(['Benign', 'Failed']);
        const byId = await store.listInvestigations(tenantId, { ...all, filter: { kind: 'compare', op: 'eq', property: 'id', value: { kind: 'number', value: Number(ids[1]) } } });
        expect(byId.items.map((i) => i.id)).toEqual([ids[1]]);
        const byEnd = await store.listInvestigations(tenantId, { ...all, orderBy: [{ property: 'endTime', direction: 'asc' }] });
        expect(byEnd.items.map((i) => i.id)).toEqual(ids);
        expect((await store.listInvestigations(tenantId, { ...all, deviceGroups: [1] })).count).toBe(0);
        expect((await store.listInvestigations(tenantId, { ...all, deviceGroups: [9] })).count).toBe(4);
        // An offboarded machine is investigated no more: nothing is written.
        const offboard = newAction(tenantId, machine, { type: 'Offboard', conflictKey: 'Offboard' });
        await store.insertAction(offboard, { at: 4000, actor: 'a', comment: null });
        await store.transitionAction({ tenantId, actionId: offboard.id, from: ['Pending'], to: 'Succeeded', patch: {}, event: { at: 4001, actor: 'm', comment: null }, offboardsMachine: true });
        const late = collect(tenantId, machine, 4002);
        expect(await store.insertInvestigation(late, { at: 4002, actor: 'app', comment: null })).toBe('offboarded');
        expect(await store.getAction(tenantId, late.id)).toBeNull();
        expect((await store.listInvestigations(tenantId, all)).count).toBe(4);
      });
    });

    it('tenants are upserted', async () => {
      const id = randomUUID();
      await store.upsertTenant({ id, name: 'one' });
      await store.upsertTenant({ id, name: 'two' });
      expect(await store.getTenant(id)).toEqual({ id, name: 'two' });
      expect(await store.getTenant(randomUUID())).toBeNull();
      expect((await store.listTenants()).some((t) => t.id === id && t.name === 'two')).toBe(true);
    });

    it('deleteMachine removes a machine with its actions, history, credentials and grants', async () => {
      const { tenantId, machine } = await tenantWithMachine();
      const { machine: other } = await tenantWithMachine();
      const action = newAction(tenantId, machine);
      await store.insertAction(action, { at: 1000, actor: 'app', comment: 'c' });
      await store.insertAction(newAction(other.tenantId, other), { at: 1000, actor: 'app', comment: 'c' });
      await store.insertReenrollGrant({ tokenHash: `g-${randomUUID()}`, tenantId, machineId: machine.id, createdAt: 1, expiresAt: 2, usedAt: null });
      expect(await store.deleteMachine(tenantId, machine.id)).toBe(true);
      expect(await store.findMachine(tenantId, machine.id, { aadDeviceId: false, computerDnsName: false })).toBeNull();
      expect(await store.getAction(tenantId, action.id)).toBeNull();
      expect(await store.listEvents(tenantId, action.id)).toEqual([]);
      expect(await store.deleteMachine(tenantId, machine.id)).toBe(false);
      expect((await store.listActions(other.tenantId, all)).items).toHaveLength(1);
    });

    // Last: it replaces the whole world, which the tests above do not rely on any more.
    it('exportWorld and replaceWorld: a world goes out and comes back the same, in one transaction', async () => {
      const { tenantId, machine } = await tenantWithMachine();
      const action = newAction(tenantId, machine, { type: 'LiveResponse', conflictKey: 'LiveResponse', scope: null });
      await store.insertAction(action, { at: 1000, actor: 'app', comment: 'c' });
      await store.transitionAction({ tenantId, actionId: action.id, from: ['Pending'], to: 'InProgress', patch: { startedAt: 1500 }, event: { at: 1500, actor: 'm', comment: null } });
      await store.transitionAction({
        tenantId,
        actionId: action.id,
        from: ['InProgress'],
        to: 'Succeeded',
        patch: {},
        event: { at: 1600, actor: 'm', comment: null, detail: { reportId: 'r1', n: [1, 'two'] }, reportId: 'r1' },
      });
      await store.upsertApplication({ tenantId, clientId: randomUUID(), objectId: randomUUID(), displayName: 'a', secretHash: 'scrypt$x', roles: ['Machine.Isolate'], createdAt: 5 });
      await store.upsertUser({ tenantId, objectId: randomUUID(), upn: 'u@x', passwordHash: 'scrypt$y', scopes: ['Machine.Read'], rolePermissions: ['View data'], deviceGroups: [7], createdAt: 6 });
      const world = await store.exportWorld();
      const mine = world.actions.find((a) => a.id === action.id)!;
      expect(mine.status).toBe('Succeeded');
      expect(mine.events.map((e) => [e.toStatus, e.reportId])).toEqual([
        ['Pending', null],
        ['InProgress', null],
        ['Succeeded', 'r1'],
      ]);

      await store.replaceWorld({ tenants: [], applications: [], users: [], machines: [], actions: [] });
      expect(await store.listTenants()).toEqual([]);
      await store.replaceWorld(world);
      expect(await store.exportWorld()).toEqual(world);
      // The report id came back: the same report is not recorded twice.
      expect(await store.appendEvent(tenantId, action.id, 'late-report', { at: 1700, actor: 'm', comment: null, reportId: 'r1' })).toBe(false);
      // A world that breaks a rule (an action on a machine it lacks) changes nothing.
      const broken = { ...world, machines: [] };
      await expect(store.replaceWorld(broken)).rejects.toThrow();
      expect(await store.exportWorld()).toEqual(world);
      // Many rows load in chunks of a few hundred per statement.
      const many = Array.from({ length: 1500 }, (_, i) => ({ ...machine, id: hexId(), computerDnsName: `bulk-${i}.local` }));
      await store.replaceWorld({ ...world, machines: [...world.machines, ...many] });
      expect((await store.listMachines(tenantId, { ...all, top: 2000 })).count).toBe(1501);
    });
  });
}
