;; A wasi:cli command component whose inner core module has a start function that never returns.
;; Instantiating it runs the start function: at deploy, that is the trial instantiation, which
;; must stop at its deadline (it used to hang `wasmlet deploy` and hold the control plane's lock).
(component
  (core module $M
    (func $forever (loop $again (br $again)))
    (start $forever)
    (func (export "run") (result i32) (i32.const 0)))
  (core instance $m (instantiate $M))
  (func $run (result (result)) (canon lift (core func $m "run")))
  (instance $run-instance (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run-instance))
)
