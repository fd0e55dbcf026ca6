//! Undo steps of a half-finished ADD.
//!
//! Each mutating step of ADD pushes the closure that undoes it; if ADD returns early (an
//! error, `?`) the [`Rollback`] is dropped and runs the undos newest first, so the IPAM
//! allocation is released and the veth pair removed without `success` flags scattered over
//! the function (netavark's guards, convention 11). [`Rollback::commit`] at the very end
//! disarms it. An undo that fails is reported on stderr (the runtime logs it) and the
//! remaining undos still run.

type Undo = Box<dyn FnOnce() -> Result<(), String>>;

/// A stack of undo actions run on drop unless committed.
#[derive(Default)]
pub struct Rollback {
    undo: Vec<(String, Undo)>,
}

impl Rollback {
    pub fn new() -> Rollback {
        Rollback::default()
    }

    /// Registers the undo of a step that just succeeded; `what` names it for error reports.
    pub fn push(
        &mut self,
        what: impl Into<String>,
        f: impl FnOnce() -> Result<(), String> + 'static,
    ) {
        self.undo.push((what.into(), Box::new(f)));
    }

    /// Keeps everything: the undos are dropped without running.
    pub fn commit(mut self) {
        self.undo.clear();
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        while let Some((what, f)) = self.undo.pop() {
            if let Err(e) = f() {
                eprintln!("bridge: rollback: {what}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn undoes_newest_first_unless_committed() {
        let log = Rc::new(RefCell::new(Vec::new()));
        {
            let mut rb = Rollback::new();
            for i in 0..3 {
                let l = log.clone();
                rb.push(format!("step {i}"), move || {
                    l.borrow_mut().push(i);
                    if i == 1 { Err("boom".into()) } else { Ok(()) }
                });
            }
        }
        assert_eq!(
            *log.borrow(),
            vec![2, 1, 0],
            "a failing undo does not stop the others"
        );
        let l = log.clone();
        let mut rb = Rollback::new();
        rb.push("kept", move || {
            l.borrow_mut().push(9);
            Ok(())
        });
        rb.commit();
        assert_eq!(log.borrow().len(), 3);
    }
}
