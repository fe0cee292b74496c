// Dredd hooks for the contract check (test/contract/dredd.test.ts): a bearer token on every
// request, a machine of its own for every action and investigation (conflict groups would
// refuse a second one), valid bodies, and a fresh Pending action for the operations that need
// one. The alert and investigation read by id are the test's own (the description's examples).
const hooks = require('hooks');
const http = require('node:http');

const token = process.env.COUNTERMAND_CONTRACT_TOKEN;
const server = process.env.COUNTERMAND_CONTRACT_SERVER;
const machines = JSON.parse(process.env.COUNTERMAND_CONTRACT_MACHINES || '[]');
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
