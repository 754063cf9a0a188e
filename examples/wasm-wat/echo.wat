;; Echo: returns its JSON input unchanged, through Morel's core ABI.
;;   alloc(len) -> ptr           the host writes the input's UTF-8 bytes at ptr
;;   handle(ptr, len) -> i64     (out_ptr << 32) | out_len of the output
;; A fresh instance serves each call, so a bump allocator that never frees is enough.
(module
  (memory (export "memory") 1)

  ;; Next free byte; the first KiB is left unused.
  (global $heap (mut i32) (i32.const 1024))

  (func (export "alloc") (param $len i32) (result i32)
    (local $ptr i32)
    (local $end i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    ;; Grow the memory when the buffer does not fit (64 KiB pages, rounded up).
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq
              (memory.grow
                (i32.sub
                  (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
                  (memory.size)))
              (i32.const -1))
          (then unreachable))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  (func (export "handle") (param $ptr i32) (param $len i32) (result i64)
    ;; The output is the input, where the host wrote it.
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
      (i64.extend_i32_u (local.get $len)))))
