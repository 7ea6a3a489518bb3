//! A stage that can fail per record: one stream of results, one of dead letters
//! (after Materialize's `map_fallible`). Bad records are data, not panics.

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use vitrine_schemas::DeadLetter;

use crate::Time;

pub trait MapFallible<'scope, D> {
    /// Applies `logic` to every record, in place on this worker: `Ok` records go to the
    /// first stream, dead letters to the second.
    fn map_fallible<O, L>(
        self,
        name: &str,
        logic: L,
    ) -> (Stream<'scope, Time, Vec<O>>, Stream<'scope, Time, Vec<DeadLetter>>)
    where
        O: Clone + 'static,
        L: FnMut(D) -> Result<O, DeadLetter> + 'static;
}

impl<'scope, D: Clone + 'static> MapFallible<'scope, D> for Stream<'scope, Time, Vec<D>> {
    fn map_fallible<O, L>(
        self,
        name: &str,
        mut logic: L,
    ) -> (Stream<'scope, Time, Vec<O>>, Stream<'scope, Time, Vec<DeadLetter>>)
    where
        O: Clone + 'static,
        L: FnMut(D) -> Result<O, DeadLetter> + 'static,
    {
        self.unary::<CapacityContainerBuilder<Vec<Result<O, DeadLetter>>>, _, _, _>(Pipeline, name, |_, _| {
            move |input, output| {
                input.for_each(|time, data| {
                    output.session(&time).give_iterator(data.drain(..).map(&mut logic));
                });
            }
        })
        .ok_err(|r| r)
    }
}
