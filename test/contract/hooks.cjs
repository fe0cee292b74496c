// Dredd hooks for the contract check (test/contract/dredd.test.ts): a bearer token on every
// request, a machine of its own for every action and investigation (conflict groups would
// refuse a second one), valid bodies, a fresh Pending action for the operations that need one,
// and for the download links an action that the test's simulated agent really carried out. The
// alert and investigation read by id are the test's own (the description's examples).
const hooks = require('hooks');
const http = require('node:http');

const token = process.env.COUNTERMAND_CONTRACT_TOKEN;
const server = process.env.COUNTERMAND_CONTRACT_SERVER;
const machines = JSON.parse(process.env.COUNTERMAND_CONTRACT_MACHINES || '[]');
const agentMachine = process.env.COUNTERMAND_CONTRACT_AGENT_MACHINE;
let next = 0;
const takeMachine = () => {
  const id = machines[next++];
  if (!id) throw new Error('the contract check ran out of fixture machines');
  return id;
};

const BODIES = {
  isolate: { Comment: 'contract check', IsolationType: 'Full' },
  unisolate: { Comment: 'contract check' },
  runAntiVirusScan: { Comment: 'contract check', ScanType: 'Quick' },
  collectInvestigationPackage: { Comment: 'contract check' },
  restrictCodeExecution: { Comment: 'contract check' },
  unrestrictCodeExecution: { Comment: 'contract check' },
  offboard: { Comment: 'contract check' },
  StopAndQuarantineFile: { Comment: 'contract check', Sha1: '0123456789abcdef0123456789abcdef01234567' },
  runliveresponse: {
    Comment: 'contract check',
    Commands: [{ type: 'GetFile', params: [{ key: 'Path', value: '/etc/hosts' }] }],
  },
  startInvestigation: { Comment: 'contract check' },
};

function call(method, path, body, done) {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const req = http.request(`${server}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
    },
  }, (res) => {
    let text = '';
    res.on('data', (c) => (text += c));
    res.on('end', () => done(null, res.statusCode, text ? JSON.parse(text) : undefined));
  });
  req.on('error', done);
  req.end(payload);
}

/**
 * Creates an action on the agent's machine and waits until the agent has carried it out (after
 * any of the same group still running there, e.g. the test's investigation collecting a package).
 */
function succeededAction(route, body, done, tries = 200) {
  call('POST', `/api/machines/${agentMachine}/${route}`, body, (error, status, created) => {
    if (error) return done(error);
    if (status === 400 && created?.error?.code === 'ActiveRequestAlreadyExists' && tries > 0) {
      return setTimeout(() => succeededAction(route, body, done, tries - 1), 50);
    }
    if (status !== 201) return done(new Error(`could not create ${route}: ${status} ${JSON.stringify(created)}`));
    const deadline = Date.now() + 30_000;
    const poll = () =>
      call('GET', `/api/machineactions/${created.id}`, undefined, (e, _s, action) => {
        if (e) return done(e);
        if (action.status === 'Succeeded') return done(null, action.id);
        if (action.status !== 'Pending' && action.status !== 'InProgress') return done(new Error(`${route} ended ${action.status}`));
        if (Date.now() > deadline) return done(new Error(`${route} did not succeed in time`));
        setTimeout(poll, 50);
      });
    poll();
  });
}

const DOWNLOAD_LINKS = [
  [/^\/api\/machineactions\/[^/?]+\/getPackageUri$/, 'collectInvestigationPackage', { Comment: 'contract check' }],
  [/^\/api\/machineactions\/[^/?]+\/GetLiveResponseResultDownloadLink\(index=0\)$/, 'runliveresponse', BODIES.runliveresponse],
];

function createAction(done) {
  const body = JSON.stringify({ Comment: 'for the contract check' });
  const req = http.request(`${server}/api/machines/${takeMachine()}/isolate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
  }, (res) => {
    let text = '';
    res.on('data', (c) => (text += c));
    res.on('end', () => {
      if (res.statusCode !== 201) return done(new Error(`could not create an action: ${res.statusCode} ${text}`));
      done(null, JSON.parse(text).id);
    });
  });
  req.on('error', done);
  req.end(body);
}

hooks.beforeEach((transaction, done) => {
  transaction.request.headers.Authorization = `Bearer ${token}`;
  const uri = transaction.request.uri;
  const link = DOWNLOAD_LINKS.find(([pattern]) => pattern.test(uri));
  if (link) {
    return succeededAction(link[1], link[2], (error, id) => {
      if (error) return done(error);
      transaction.request.uri = uri.replace(/^\/api\/machineactions\/[^/?]+/, `/api/machineactions/${id}`);
      transaction.fullPath = transaction.request.uri;
      done();
    });
  }
  const action = /^\/api\/machines\/[^/]+\/([A-Za-z]+)$/.exec(uri);
  if (action && BODIES[action[1]]) {
    transaction.request.uri = `/api/machines/${takeMachine()}/${action[1]}`;
    transaction.fullPath = transaction.request.uri;
    transaction.request.body = JSON.stringify(BODIES[action[1]]);
    transaction.request.headers['Content-Type'] = 'application/json';
    return done();
  }
  if (/^\/api\/machineactions\/[^/?]+(\/cancel)?$/.test(uri)) {
    return createAction((error, id) => {
      if (error) return done(error);
      transaction.request.uri = uri.replace(/^\/api\/machineactions\/[^/?]+/, `/api/machineactions/${id}`);
      transaction.fullPath = transaction.request.uri;
      if (uri.endsWith('/cancel')) {
        transaction.request.body = JSON.stringify({ Comment: 'contract check' });
        transaction.request.headers['Content-Type'] = 'application/json';
      }
      done();
    });
  }
  done();
});
