// The official `openai` npm package, stock, pointed at `p2pinference client serve`: what a
// JavaScript user of the network runs. Driven by tests/e2e/OpenAi/OpenAiNpmClientTests.cs.
//
//   node openai-client.mjs BASE_URL API_KEY MODE [PROMPT]
//
// MODE: chat (unary), stream, abort (stop reading after the first chunk and abort the request),
// error (a key the network does not know). Prints one JSON line with what the client saw.
import './polyfill.mjs';
import OpenAI from 'openai';

const [baseURL, apiKey, mode, prompt = 'The network'] = process.argv.slice(2);
// No retries: a test wants the first answer, and a retried 429 would hide it.
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const request = { model: 'builtin-small', messages: [{ role: 'user', content: prompt }], max_tokens: 12, temperature: 0 };

function print(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
}

try {
  switch (mode) {
    case 'chat': {
      const completion = await client.chat.completions.create(request);
      print({
        object: completion.object,
        text: completion.choices[0].message.content,
        finish: completion.choices[0].finish_reason,
        completionTokens: completion.usage?.completion_tokens ?? null,
      });
      break;
    }
    case 'stream': {
      const stream = await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
      let text = '';
      let chunks = 0;
      let finish = null;
      let completionTokens = null;
      for await (const chunk of stream) {
        chunks++;
        if (chunk.choices.length > 0) {
          text += chunk.choices[0].delta?.content ?? '';
          finish = chunk.choices[0].finish_reason ?? finish;
        }
        if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
      }
      print({ text, chunks, finish, completionTokens });
      break;
    }
    case 'abort': {
      const controller = new AbortController();
      const stream = await client.chat.completions.create({ ...request, max_tokens: 500, stream: true }, { signal: controller.signal });
      let chunks = 0;
      let error = null;
      try {
        for await (const chunk of stream) {
          chunks++;
          if (chunk.choices.length > 0 && chunks === 1) controller.abort();
        }
      } catch (e) {
        // The package ends the iteration quietly on an abort; anything else is a failure.
        if (!(e instanceof OpenAI.APIUserAbortError) && e.name !== 'AbortError') error = `${e.constructor.name}: ${e.message}`;
      }
      print({ aborted: controller.signal.aborted, chunks, error });
      break;
    }
    case 'error': {
      try {
        await client.chat.completions.create(request);
        print({ status: 200 });
      } catch (e) {
        print({ status: e.status ?? null, type: e.error?.type ?? e.type ?? null, isApiError: e instanceof OpenAI.APIError });
      }
      break;
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
} catch (e) {
  print({ failed: `${e.constructor.name}: ${e.message}` });
  process.exitCode = 1;
}
