// Judges IAM requests with @cloud-copilot/iam-simulate (a test-time tool; AGPL-3.0, see
// docs/decisions.md). Reads a JSON list of simulations on stdin, writes a JSON list of
// {result, errors} (result: Allowed | ImplicitlyDenied | ExplicitlyDenied | error).
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const simulations = JSON.parse(Buffer.concat(chunks).toString('utf8'))
const answers = []
for (const simulation of simulations) {
  const response = await runSimulation(simulation, {})
  answers.push(response.resultType === 'error'
    ? { result: 'error', errors: response.errors }
    : { result: response.overallResult })
}
process.stdout.write(JSON.stringify(answers))
