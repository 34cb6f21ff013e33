// ipywidgets 8 typesets widget labels with the MathJax 2 API (MathJax.Hub.Queue); the book loads
// MathJax 3, which has no Hub, so every widget with a description threw
// "Cannot read properties of undefined (reading 'Queue')". Map the call onto MathJax 3.
// Loaded deferred, after MathJax's own (deferred) script, so window.MathJax is MathJax 3 here.
(function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub || !mj.version) return;
  mj.Hub = {
    Queue: function () {
      for (var i = 0; i < arguments.length; i++) {
        var job = arguments[i];
        if (Array.isArray(job) && job[0] === "Typeset" && window.MathJax.typesetPromise) {
          var el = job[2];
          window.MathJax.typesetPromise(el ? [el] : undefined).catch(function () {});
        }
      }
    },
  };
})();
