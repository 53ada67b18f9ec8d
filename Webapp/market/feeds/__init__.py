"""Price feeds that write ticks into the LTPStore: the interface and the simulated feed."""

from Webapp.market.feeds.base import Feed, FeedState, FeedStatus
from Webapp.market.feeds.simulated import SimulatedFeed

__all__ = ["Feed", "FeedState", "FeedStatus", "SimulatedFeed"]
