//! infer_operator: the decode and infer stages as a timely operator, above the model pool.
//! Frames go to the process's model threads and their detections come back by ticket, so the
//! worker keeps feeding frames and moving time on while the models run.

use std::collections::HashMap;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use vitrine_schemas::{DeadLetter, Frame, FrameDetections};

use crate::model_pool::ModelQueues;
use crate::Time;

/// The decode and infer stages as a timely operator: frames go to the process's model threads
/// ([`ModelPool`](crate::ModelPool)), and their detections come out at the frame's time, as do
/// the frames that failed (to decode, or in the model).
pub trait InferDetections<'scope> {
    fn infer_detections(
        self,
        models: ModelQueues,
    ) -> (Stream<'scope, Time, Vec<FrameDetections>>, Stream<'scope, Time, Vec<DeadLetter>>);
}

impl<'scope> InferDetections<'scope> for Stream<'scope, Time, Vec<Frame>> {
    fn infer_detections(
        self,
        models: ModelQueues,
    ) -> (Stream<'scope, Time, Vec<FrameDetections>>, Stream<'scope, Time, Vec<DeadLetter>>) {
        let scope = self.scope();
        self.unary::<CapacityContainerBuilder<Vec<Result<FrameDetections, DeadLetter>>>, _, _, _>(
            Pipeline,
            "Infer",
            move |_, info| {
                let mut models = models.client(scope.worker().sync_activator_for(info.address.to_vec()));
                // The capability of each frame with the models, by ticket: it holds the frame's
                // time open until the detections are out.
                let mut with_models: HashMap<u64, Capability<Time>> = HashMap::new();
                move |input, output| {
                    input.for_each(|cap, data| {
                        let cap = cap.retain_least(0).expect("a capability");
                        for frame in data.drain(..) {
                            with_models.insert(models.send(frame), cap.clone());
                        }
                    });
                    for (ticket, result) in models.results() {
                        let cap = with_models.remove(&ticket).expect("a capability for each ticket");
                        output.session(&cap).give(result);
                    }
                }
            },
        )
        .ok_err(|r| r)
    }
}
