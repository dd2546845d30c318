;; A wasi:http incoming-handler whose handle drops both of its arguments.
;; Built by build.sh (`wasm-tools component embed` + `component new`); used
;; to show that the host cannot call handle (tests/guest/test_component.py).
(module
  (import "wasi:http/types@0.2.0" "[resource-drop]incoming-request" (func $drop_request (param i32)))
  (import "wasi:http/types@0.2.0" "[resource-drop]response-outparam" (func $drop_outparam (param i32)))
  (memory (export "memory") 1)
  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)
    (call $drop_request (local.get $request))
    (call $drop_outparam (local.get $out))))
