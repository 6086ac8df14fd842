//! A union-find (disjoint sets) over TQC indices, with path compression and union by rank.
//!
//! PPQ keeps dominator ("father") links as a tree and walks it to the top; when one tensor
//! joins two groups (a Relu feeding two Concats) the trees must merge. A union-find does
//! exactly that in near-constant time, and `find` gives the root that holds the group's
//! parameters.

#[derive(Debug, Clone, Default)]
pub struct UnionFind {
    parent: Vec<u32>,
    rank: Vec<u8>,
}

impl UnionFind {
    /// Adds a singleton set; returns its index.
    pub fn push(&mut self) -> usize {
        let i = self.parent.len();
        self.parent.push(i as u32);
        self.rank.push(0);
        i
    }

    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// The root of `i`'s set, compressing the path (every node on it then points at the root).
    pub fn find(&mut self, i: usize) -> usize {
        let mut root = i;
        while self.parent[root] as usize != root {
            root = self.parent[root] as usize;
        }
        let mut cur = i;
        while self.parent[cur] as usize != root {
            let next = self.parent[cur] as usize;
            self.parent[cur] = root as u32;
            cur = next;
        }
        root
    }

    /// The root without compressing (for `&self` readers).
    pub fn root(&self, mut i: usize) -> usize {
        while self.parent[i] as usize != i {
            i = self.parent[i] as usize;
        }
        i
    }

    /// Merges the sets of `a` and `b`. Returns `(winner, loser)` roots, or `None` when they
    /// were already one set. The higher rank wins; on a tie `a`'s root wins, so callers can
    /// prefer a master by passing it first.
    pub fn union(&mut self, a: usize, b: usize) -> Option<(usize, usize)> {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return None;
        }
        let (win, lose) = if self.rank[ra] >= self.rank[rb] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[lose] = win as u32;
        if self.rank[win] == self.rank[lose] {
            self.rank[win] += 1;
        }
        Some((win, lose))
    }

    /// Makes `i` point directly at `root` (used by the parser, which reads flattened trees).
    pub fn link(&mut self, i: usize, root: usize) {
        self.parent[i] = root as u32;
        if self.rank[root] == 0 {
            self.rank[root] = 1;
        }
    }

    /// The direct parent (the dominator link as stored).
    pub fn parent(&self, i: usize) -> usize {
        self.parent[i] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uf(n: usize) -> UnionFind {
        let mut u = UnionFind::default();
        for _ in 0..n {
            u.push();
        }
        u
    }

    #[test]
    fn union_by_rank_and_ties() {
        let mut u = uf(4);
        assert_eq!(u.union(0, 1), Some((0, 1)), "tie: first argument wins");
        // {0,1} has rank 1, {2} rank 0: the higher rank wins whatever the order.
        assert_eq!(u.union(2, 0), Some((0, 2)));
        assert_eq!(u.union(1, 2), None, "already one set");
        assert_eq!(u.find(3), 3);
    }

    #[test]
    fn two_groups_merge_through_a_shared_member() {
        // The lecture's case: r feeds concat A (root a) and concat B (root b).
        let (a, b, r, x, y) = (0, 1, 2, 3, 4);
        let mut u = uf(5);
        u.union(a, x);
        u.union(a, r);
        u.union(b, y);
        // r already belongs to a's group: merging pulls both groups together.
        let (win, lose) = u.union(b, r).unwrap();
        assert_eq!(
            (win, lose),
            (b, a),
            "equal ranks: b (first) wins, a becomes a member"
        );
        for i in 0..5 {
            assert_eq!(u.find(i), b);
        }
    }

    #[test]
    fn path_compression_flattens() {
        let mut u = uf(6);
        // Build a chain by linking roots of growing sets under fresh singletons is not
        // possible with rank; so link by hand to a deep chain and compress.
        for i in 1..6 {
            u.parent[i] = (i - 1) as u32;
        }
        assert_eq!(u.root(5), 0);
        assert_eq!(u.find(5), 0);
        for i in 1..6 {
            assert_eq!(u.parent(i), 0, "node {i} points at the root after find");
        }
    }
}
