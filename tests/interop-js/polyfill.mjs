// Node 20 lacks Promise.withResolvers (added in Node 22), which js-libp2p 3.x
// calls at runtime. ESM imports are hoisted, so this must be its own module and
// be imported before anything from libp2p.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve
      let reject
      const promise = new this((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}
