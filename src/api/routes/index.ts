import type { Operation } from '../operation.js';
import { getAlert } from './alerts/get-alert.js';
import { listAlerts } from './alerts/list-alerts.js';
import { getMetadata } from './metadata/get-metadata.js';
import { getInvestigation } from './investigations/get-investigation.js';
import { listInvestigations } from './investigations/list-investigations.js';
import { listActionEvents } from './extensions/list-action-events.js';
import { streamActionChanges } from './extensions/stream-action-changes.js';
import { deleteLibraryFile } from './library/delete-library-file.js';
import { listLibraryFiles } from './library/list-library-files.js';
import { uploadLibraryFile } from './library/upload-library-file.js';
import { getLiveResponseResultDownloadLink } from './machine-actions/get-live-response-result-download-link.js';
import { getPackageUri } from './machine-actions/get-package-uri.js';
import { cancelMachineAction } from './machine-actions/cancel-machine-action.js';
import { getMachineAction } from './machine-actions/get-machine-action.js';
import { listMachineActions } from './machine-actions/list-machine-actions.js';
import { createMachineActions } from './machines/create-machine-action.js';
import { findMachinesByIp } from './machines/find-machines-by-ip.js';
import { getMachine } from './machines/get-machine.js';
import { listMachines } from './machines/list-machines.js';
import { startInvestigation } from './machines/start-investigation.js';

export const OPERATIONS: readonly Operation[] = [
  listMachineActions,
  getMachineAction,
  cancelMachineAction,
  getPackageUri,
  getLiveResponseResultDownloadLink,
  ...createMachineActions,
  listMachines,
  getMachine,
  findMachinesByIp,
  startInvestigation,
  listAlerts,
  getAlert,
  listInvestigations,
  getInvestigation,
  getMetadata,
  listLibraryFiles,
  uploadLibraryFile,
  deleteLibraryFile,
  // Countermand's own, outside MDE's surface (docs/action-center.md).
  listActionEvents,
  streamActionChanges,
];
