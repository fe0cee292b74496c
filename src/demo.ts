import type { Fixtures } from './fixtures.js';

/** What a start without fixtures serves: one tenant, a few Linux machines, one application. */
export const DEMO_TENANT_ID = '6c0f4b1e-0d5a-4c3e-9a59-5d1f2a7c0001';
export const DEMO_CLIENT_ID = '6c0f4b1e-0d5a-4c3e-9a59-5d1f2a7c0a01';

export const ALL_APP_ROLES = [
  'Machine.Read.All',
  'Machine.ReadWrite.All',
  'Machine.Isolate',
  'Machine.Scan',
  'Machine.CollectForensics',
  'Machine.RestrictExecution',
  'Machine.Offboard',
  'Machine.StopAndQuarantine',
  'Machine.LiveResponse',
  'Library.Manage',
  'Alert.ReadWrite.All',
];

export function demoFixtures(): Fixtures {
  return {
    tenants: [
      {
        id: DEMO_TENANT_ID,
        name: 'Countermand Demo',
        machines: ['web-01', 'web-02', 'db-01'].map((name, i) => ({
          computerDnsName: `${name}.demo.countermand.local`,
          osPlatform: 'Linux',
          osVersion: 'Debian 12',
          version: '12',
          rbacGroupId: 1,
          rbacGroupName: 'Servers',
          lastIpAddress: `10.0.0.${11 + i}`,
          ipAddresses: [{ ipAddress: `10.0.0.${11 + i}`, type: 'Ethernet', operationalStatus: 'Up' }],
        })),
        applications: [
          {
            clientId: DEMO_CLIENT_ID,
            clientSecret: 'demo-secret-demo-secret',
            displayName: 'Countermand Demo App',
            roles: ALL_APP_ROLES,
          },
        ],
      },
    ],
  };
}
